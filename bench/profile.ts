/**
 * Where one `wal-push` (one process per segment, zstd level 1, file://) spends its time, by
 * difference of medians over the same segments: bare Node start; the CLI's load (launcher, compile
 * cache, fast entry, settings); the work without compression (settings, storage, read, write 16 MiB,
 * fsync of the object and its directory) and with zstd level 1 (compression on the thread pool,
 * ~1 MiB to write). Then one run under `--cpu-prof`, summarised by where the main thread's time
 * went (top functions by self time; "(idle)" is waiting for fsync and the thread pool).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { cleanEnv, makePgdata, median, settle, timeSteps, walshipBin, walshipRoot, type BenchContext, type Step } from './lib.ts';

const SECTION = 'wal-push start-up path: where the time of one process per segment goes (medians, ms)';

export async function run(ctx: BenchContext): Promise<void> {
  const names = ctx.wal.names.slice(0, Math.min(ctx.wal.names.length, ctx.quick ? 12 : 24));
  const node = process.execPath;
  const dir = path.join(ctx.workDir, 'profile');
  const pgdata = makePgdata(path.join(dir, 'pgdata'), { ...ctx.wal, names }, { withWal: true, ready: false });
  const each = (label: string, step: (name: string, i: number) => Step[], env: NodeJS.ProcessEnv = cleanEnv()) => {
    settle();
    const times = names.map((name, i) => timeSteps(step(name, i), { cwd: pgdata, env }));
    const m = median(times);
    ctx.log(`  ${label}: ${m.toFixed(1)} ms`);
    return m;
  };
  let repo = 0;
  const walshipEnv = (compression: string) => {
    const repoDir = path.join(dir, `repo-${++repo}`);
    fs.mkdirSync(repoDir, { recursive: true });
    return cleanEnv({ WALSHIP_STORAGE: `file://${repoDir}`, WALSHIP_LOOKAHEAD: '0', WALSHIP_COMPRESSION: compression });
  };
  const out = path.join(dir, 'out');
  fs.mkdirSync(out, { recursive: true });

  const bare = each('node -e 0', () => [{ file: node, args: ['-e', '0'] }]);
  const version = each('walship --version', () => [{ file: walshipBin, args: ['--version'] }]);
  const none = each('walship wal-push, compression none', (name) => [{ file: walshipBin, args: ['wal-push', `pg_wal/${name}`] }], walshipEnv('none'));
  const zstd = each('walship wal-push, zstd level 1', (name) => [{ file: walshipBin, args: ['wal-push', `pg_wal/${name}`] }], walshipEnv('zstd'));
  const cp = each('cp + sync', (name) => [
    { file: 'cp', args: [`pg_wal/${name}`, path.join(out, name)] },
    { file: 'sync', args: [path.join(out, name)] },
  ]);
  const zcli = each('zstd -1 + sync', (name) => [
    { file: 'zstd', args: ['-q', '-f', '-1', `pg_wal/${name}`, '-o', path.join(out, `${name}.zst`)] },
    { file: 'sync', args: [path.join(out, `${name}.zst`)] },
  ]);
  const rows: [string, number, string][] = [
    ['Node 24 start (node -e 0)', bare, ''],
    ['CLI load: sh launcher, compile cache, fast entry, settings (--version − node)', version - bare, ''],
    ['the work, compression none: settings, storage, read 16 MiB, write 16 MiB, fsync file + directory, walship.json check (none − --version)', none - version, `cp + sync: ${cp.toFixed(1)}`],
    ['the work, zstd level 1: the same with zstd on the thread pool, ~1 MiB written (zstd − --version)', zstd - version, `zstd -1 + sync: ${zcli.toFixed(1)}`],
    ['total wal-push zstd-1', zstd, `${(zstd / zcli).toFixed(2)}× zstd -1 + sync (target ≤ 2.5×)`],
  ];
  for (const [name, ms, note] of rows) ctx.record({ section: SECTION, name, medianMs: ms, note });

  // One run under the CPU profiler: where the CPU time of one wal-push goes.
  const profDir = path.join(dir, 'cpu-prof');
  fs.mkdirSync(profDir, { recursive: true });
  const name = names[names.length - 1]!;
  const r = spawnSync(node, ['--cpu-prof', `--cpu-prof-dir=${profDir}`, path.join(walshipRoot, 'bin', 'launch.mjs'), 'wal-push', `pg_wal/${name}`], {
    cwd: pgdata,
    env: walshipEnv('zstd'),
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`wal-push under --cpu-prof failed: ${r.stderr}`);
  const file = fs.readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  if (file) {
    const top = summariseProfile(JSON.parse(fs.readFileSync(path.join(profDir, file), 'utf8')) as CpuProfile);
    for (const [what, ms] of top) ctx.record({ section: 'wal-push under --cpu-prof (one zstd-1 push, self time by function, ms)', name: what, medianMs: ms });
    const keep = process.env['WALSHIP_BENCH_PROFILE_OUT'];
    if (keep) fs.copyFileSync(path.join(profDir, file), keep);
  }
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time per function (top 12), with the module shortened. */
function summariseProfile(profile: CpuProfile): [string, number][] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const node = byId.get(id);
    if (!node) return;
    const { functionName, url } = node.callFrame;
    const where = url ? url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/').replace(/^node:/, 'node:') : '';
    const key = `${functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
    self.set(key, (self.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  return [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12);
}
