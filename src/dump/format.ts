import type { DumpManifest } from './manifest.ts';

/** dump-list's table: one row per dump, oldest first. */
export function formatDumpTable(dumps: readonly DumpManifest[]): string {
  if (!dumps.length) return 'no dumps\n';
  const rows = dumps.map((m) => [
    m.name,
    m.kind === 'database' ? (m.database ?? '') : `--all (${m.files.filter((f) => f.kind === 'database').length} databases)`,
    m.finished.replace(/\.\d+Z$/, 'Z'),
    humanBytes(m.size),
    humanBytes(m.storedSize),
    m.serverVersion.split(' ')[0] ?? '',
    `${m.codec.compression}${m.codec.encrypted ? '+age' : ''}`,
  ]);
  const header = ['name', 'database', 'finished', 'size', 'stored', 'server', 'codec'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}

export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
