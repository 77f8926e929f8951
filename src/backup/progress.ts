/** A progress bar on stderr when it is a terminal; nothing otherwise (cron, PostgreSQL's log). */
export interface Progress {
  add(bytes: number): void;
  stop(): void;
}

const silent: Progress = { add() {}, stop() {} };

export async function startProgress(label: string, total: number): Promise<Progress> {
  if (!process.stderr.isTTY || total <= 0) return silent;
  const { default: cliProgress } = await import('cli-progress');
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${label} [{bar}] {percentage}% | {done} of {size} | {rate} | ETA {eta_formatted}`,
      hideCursor: true,
      clearOnComplete: true,
      etaBuffer: 50,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  const started = Date.now();
  let done = 0;
  const payload = () => ({ done: formatBytes(done), size: formatBytes(total), rate: `${formatBytes(done / Math.max(0.001, (Date.now() - started) / 1000))}/s` });
  bar.start(total, 0, payload());
  return {
    add(bytes) {
      done += bytes;
      bar.update(Math.min(done, total), payload());
    },
    stop() {
      bar.stop();
    },
  };
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(value >= 100 ? 0 : value >= 10 ? 1 : 2)} ${units[unit]}`;
}

export const mibPerSecond = (bytes: number, ms: number) => (bytes / 1048576 / Math.max(ms / 1000, 0.001)).toFixed(1);
