/**
 * What encryption adds to archiving: `walship wal-push` of 16 MiB segments, one process per
 * segment as PostgreSQL runs archive_command, into file:// repositories, zstd level 1 with an
 * age X25519 recipient vs zstd alone (and, for information, with a passphrase at the default
 * work factor). The modes alternate segment by segment, so drift in disk or CPU speed hits both
 * alike. Target (issue 4): encryption adds at most 10% per segment.
 *
 * Uses the built CLI (`npm run build` first). `run()` is what `npm run bench` calls;
 *   node bench/encryption.ts [--segments 20] [--no-passphrase] [--json]
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { makeSegment } from '../test/helpers/wal-files.ts';

const walship = fileURLToPath(new URL('../bin/walship', import.meta.url));

export interface EncryptionBenchResult {
  segments: number;
  segmentBytes: number;
  /** Median wall time of one `walship wal-push` process, milliseconds. */
  zstdMs: number;
  zstdAgeMs: number;
  /** zstdAgeMs / zstdMs (medians); the target is at most 1.10. */
  ratio: number;
  /** The same ratio from the means, as a check on the medians. */
  meanRatio: number;
  /** Mean CPU time (user + system) of one process, milliseconds, and their ratio: less disturbed by other load. */
  zstdCpuMs: number;
  zstdAgeCpuMs: number;
  cpuRatio: number;
  /** Median with WALSHIP_PASSPHRASE_FILE (scrypt at the default work factor), when measured. */
  passphraseMs?: number | undefined;
  target: number;
  meetsTarget: boolean;
}

export interface EncryptionBenchOptions {
  /** Segments pushed per mode (default 20). */
  segments?: number;
  /** Also measure passphrase mode (default true). */
  passphrase?: boolean;
  log?: (line: string) => void;
}

/**
 * One `walship wal-push` process: wall time, and its CPU time (user + system, all threads, as the
 * shell's `times` reports for its children), which other load on the machine disturbs less.
 */
function pushOnce(path: string, env: Record<string, string>): Promise<{ wall: number; cpu: number }> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    execFile('/bin/sh', ['-c', '"$0" wal-push "$1" && times', walship, path], { env: { PATH: '/usr/local/bin:/usr/bin:/bin', ...env } }, (err, stdout, stderr) => {
      const wall = Number(process.hrtime.bigint() - start) / 1e6;
      if (err) return reject(new Error(`walship wal-push ${path}: ${err.message}\n${stderr}`));
      // `times`: the shell's own user/system times, then its children's: "0m0.080000s 0m0.040000s".
      const children = stdout.trim().split('\n').pop() ?? '';
      const secs = [...children.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
      resolve({ wall, cpu: secs.length === 2 ? (secs[0]! + secs[1]!) * 1000 : Number.NaN });
    });
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

export async function run(options: EncryptionBenchOptions = {}): Promise<EncryptionBenchResult> {
  const count = options.segments ?? 20;
  const log = options.log ?? (() => {});
  const dir = mkdtempSync(join(tmpdir(), 'walship-bench-encryption-'));
  try {
    const config = join(dir, 'walship.json');
    writeFileSync(config, '{}');
    const keyFile = join(dir, 'key.txt');
    const recipient = await new Promise<string>((resolve, reject) =>
      execFile(walship, ['keygen', '-o', keyFile], { env: { WALSHIP_CONFIG: config } }, (err, stdout) => (err ? reject(err) : resolve(stdout.trim()))),
    );
    const passphraseFile = join(dir, 'passphrase');
    writeFileSync(passphraseFile, 'a long random passphrase for the benchmark\n', { mode: 0o600 });

    const modes: { name: string; env: Record<string, string> }[] = [
      { name: 'zstd', env: {} },
      { name: 'zstd+age', env: { WALSHIP_RECIPIENTS: recipient } },
      ...(options.passphrase === false ? [] : [{ name: 'zstd+passphrase', env: { WALSHIP_PASSPHRASE_FILE: passphraseFile } }]),
    ];
    const segDir = join(dir, 'wal');
    mkdirSync(segDir);
    log(`encryption: writing ${count} segments of 16 MiB`);
    const paths: string[] = [];
    for (let i = 0; i < count + 1; i++) {
      const segment = makeSegment({ segNo: BigInt(i + 1) });
      const path = join(segDir, segment.name);
      writeFileSync(path, segment.bytes);
      paths.push(path);
    }
    const times = new Map<string, number[]>(modes.map((m) => [m.name, []]));
    const cpu = new Map<string, number[]>(modes.map((m) => [m.name, []]));
    const envOf = (m: (typeof modes)[number]) => ({ WALSHIP_CONFIG: config, WALSHIP_STORAGE: `file://${join(dir, `repo-${m.name}`)}`, ...m.env });
    for (const m of modes) mkdirSync(join(dir, `repo-${m.name}`));
    // Warm-up: the first segment in every mode (page cache, compile cache), not counted.
    for (const m of modes) await pushOnce(paths[0]!, envOf(m));
    for (let i = 1; i <= count; i++) {
      // Alternate the order too, so neither mode always runs right after the other.
      const order = i % 2 ? modes : [...modes].reverse();
      for (const m of order) {
        const t = await pushOnce(paths[i]!, envOf(m));
        times.get(m.name)!.push(t.wall);
        cpu.get(m.name)!.push(t.cpu);
      }
    }
    const zstd = times.get('zstd')!;
    const age = times.get('zstd+age')!;
    const pass = times.get('zstd+passphrase');
    const ratio = median(age) / median(zstd);
    const result: EncryptionBenchResult = {
      segments: count,
      segmentBytes: 16 * 1024 * 1024,
      zstdMs: Math.round(median(zstd) * 10) / 10,
      zstdAgeMs: Math.round(median(age) * 10) / 10,
      ratio: Math.round(ratio * 1000) / 1000,
      meanRatio: Math.round((mean(age) / mean(zstd)) * 1000) / 1000,
      zstdCpuMs: Math.round(mean(cpu.get('zstd')!)),
      zstdAgeCpuMs: Math.round(mean(cpu.get('zstd+age')!)),
      cpuRatio: Math.round((mean(cpu.get('zstd+age')!) / mean(cpu.get('zstd')!)) * 1000) / 1000,
      passphraseMs: pass ? Math.round(median(pass) * 10) / 10 : undefined,
      target: 1.1,
      meetsTarget: ratio <= 1.1,
    };
    log(
      `encryption: wal-push per 16 MiB segment, median of ${count}: zstd ${result.zstdMs} ms, zstd+age ${result.zstdAgeMs} ms, ratio ${result.ratio} (target <= ${result.target}: ${result.meetsTarget ? 'met' : 'MISSED'}); CPU per process ${result.zstdCpuMs} vs ${result.zstdAgeCpuMs} ms, ratio ${result.cpuRatio}` +
        (result.passphraseMs !== undefined ? `; zstd+passphrase (scrypt 2^15) ${result.passphraseMs} ms` : ''),
    );
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { segments: { type: 'string', default: '20' }, 'no-passphrase': { type: 'boolean', default: false }, json: { type: 'boolean', default: false } } });
  const result = await run({ segments: Number(values.segments), passphrase: !values['no-passphrase'], log: values.json ? () => {} : (line) => console.log(line) });
  if (values.json) console.log(JSON.stringify(result));
}
