/**
 * `npm run bench` — walship against cp, zstd, lz4 and pgBackRest 2.45 on the same real WAL, in
 * one run, printed as a table of per-segment medians and ratios (docs/benchmarks.md).
 *
 *   npm run bench                      full run (~14 min here, every section)
 *   npm run bench -- --quick           quick run (~7 min here, < 10 min): fewer segments, short runs
 *   npm run bench -- --segments 64     how many 16 MiB segments (default 48; quick 24)
 *   npm run bench -- --segments-dir D  keep the generated segments in D and reuse them next time
 *   npm run bench -- --only wal,profile  run only these sections
 *   npm run bench -- --out FILE        also write the table (Markdown) to FILE
 *
 * Sections are modules `bench/<topic>.ts` exporting `run(ctx: BenchContext)` (see bench/lib.ts):
 * `wal` (push/fetch per segment), `profile` (where wal-push's time goes), `sustained` (archive lag
 * under pgbench), then any other bench/*.ts that exports `run`. A bench script without a `run`
 * export that takes `--json` (bench/age.ts) is run as a child process and its JSON recorded.
 *
 * Needs root or the postgres OS user (PostgreSQL 15 clusters), pgbackrest, zstd and lz4 on PATH,
 * and a built CLI (`npm run build`; this script builds it first).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { repoRoot, table, useWalshipAt, type BenchContext, type BenchSection, type Row } from './lib.ts';
import { makeSegments } from './segments.ts';
import { pgbackrestVersion } from './pgbackrest.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    quick: { type: 'boolean', default: false },
    segments: { type: 'string' },
    'segments-dir': { type: 'string' },
    only: { type: 'string' },
    out: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const quick = values.quick ?? false;
const count = Number(values.segments ?? (quick ? 24 : 48));
const only = values.only ? new Set(values.only.split(',')) : undefined;
const started = Date.now();
const log = (line: string) => process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);

const own = new Set(['lib.ts', 'run.ts', 'segments.ts', 'pgbackrest.ts']);
const builtIn = ['wal', 'profile', 'sustained'];
const discovered = fs
  .readdirSync(path.join(repoRoot, 'bench'))
  .filter((f) => f.endsWith('.ts') && !own.has(f))
  .map((f) => f.slice(0, -3))
  .filter((t) => !builtIn.includes(t))
  .sort();
const topics = [...builtIn, ...discovered].filter((t) => !only || only.has(t));

const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'walship-bench-'));
fs.chmodSync(workDir, 0o755);
log(`building a private copy of the CLI in ${workDir}/walship`);
buildPrivateCopy(path.join(workDir, 'walship'));
const rows: Row[] = [];
try {
  log(`segments: ${count} x 16 MiB of pgbench WAL${values['segments-dir'] ? ` (kept in ${values['segments-dir']})` : ''}`);
  const segments = await makeSegments(count, values['segments-dir'], log);
  const ctx: BenchContext = {
    quick,
    workDir,
    wal: segments,
    segments: count,
    log,
    rows,
    args: positionals,
    record: (row) => rows.push(row),
  };
  for (const topic of topics) {
    const file = path.join(repoRoot, 'bench', `${topic}.ts`);
    const source = fs.readFileSync(file, 'utf8');
    log(`== ${topic}`);
    try {
      if (/export\s+(async\s+)?function\s+run\s*\(/.test(source)) {
        const mod = (await import(file)) as { run: BenchSection };
        const result = await mod.run(ctx);
        if (result && typeof result === 'object') {
          for (const [name, value] of Object.entries(result)) {
            if (typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean') {
              rows.push({ section: topic, name, value: typeof value === 'number' ? String(Math.round(value * 100) / 100) : String(value) });
            }
          }
        }
      } else if (source.includes("'json'") || source.includes('json:')) {
        runScript(topic, file, ctx);
      } else {
        log(`${topic}: no run() export and no --json; skipped`);
      }
    } catch (err) {
      log(`${topic} failed: ${(err as Error).stack ?? err}`);
      rows.push({ section: topic, name: 'FAILED', note: String((err as Error).message ?? err).split('\n')[0] });
    }
  }
} finally {
  if (!values.keep) fs.rmSync(workDir, { recursive: true, force: true });
}

const header = [
  `## walship benchmark ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC${quick ? ' (quick)' : ''}`,
  '',
  `machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.type()} ${os.release()}; load average at the end ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`,
  `versions: walship ${JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).version}, Node ${process.version}, ${pgbackrestVersion() ?? 'pgBackRest missing'}, ${firstLine('zstd', ['--version'])}, ${firstLine('lz4', ['--version'])}, PostgreSQL 15`,
  `command: npm run bench --${quick ? ' --quick' : ''} (segments: ${count})`,
].join('\n');
const output = `${header}\n${table(rows)}\n`;
process.stdout.write(output);
if (values.out) fs.writeFileSync(values.out, output);
log(`done in ${((Date.now() - started) / 60000).toFixed(1)} min`);

function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return (r.stdout || r.stderr || `${cmd} missing`).split('\n')[0]!.replace(/\s+/g, ' ').trim();
}

/** A bench script of its own (no run export): run it with --json, record each figure it prints. */
function runScript(topic: string, file: string, ctx: BenchContext): void {
  const args = [file, '--json', ...(topic === 'age' && ctx.quick ? ['--size-mib', '256'] : [])];
  const r = spawnSync(process.execPath, args, { cwd: repoRoot, encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`${topic}: exit ${r.status}: ${r.stderr}`);
  const figures = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
  for (const [name, value] of Object.entries(figures)) ctx.record({ section: topic, name, value: String(value) });
  ctx.log(`  ${topic}: ${r.stdout.trim()}`);
}

/** Copy what the build needs, build there, and run the CLI from there (bin/walship finds node_modules next to it). */
function buildPrivateCopy(root: string): void {
  fs.mkdirSync(root, { recursive: true });
  for (const entry of ['bin', 'src', 'scripts', 'package.json', 'tsconfig.json']) {
    fs.cpSync(path.join(repoRoot, entry), path.join(root, entry), { recursive: true });
  }
  fs.symlinkSync(path.join(repoRoot, 'node_modules'), path.join(root, 'node_modules'));
  const build = spawnSync(process.execPath, ['scripts/build.ts'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) throw new Error('build failed');
  useWalshipAt(root);
}
