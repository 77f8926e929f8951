/**
 * Shared pieces of `npm run bench`: the context every section gets, timing of child processes,
 * medians, the result table. A section is a module `bench/<topic>.ts` exporting
 * `run(ctx: BenchContext): Promise<void>` that adds rows with `ctx.record(...)`.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MadeSegments } from './segments.ts';

export const repoRoot = fileURLToPath(new URL('../', import.meta.url));
/**
 * The CLI under test. run.ts builds a private copy (bin/, dist/, node_modules linked) into the
 * scratch directory and points this at it, so a rebuild of the work tree's dist/ during a run
 * cannot change or break what is measured.
 */
export let walshipBin = path.join(repoRoot, 'bin', 'walship');
export let walshipRoot = repoRoot;
export function useWalshipAt(root: string): void {
  walshipRoot = root;
  walshipBin = path.join(root, 'bin', 'walship');
}

export interface Row {
  section: string;
  name: string;
  /** Milliseconds per segment: median of the per-call times. */
  medianMs?: number | undefined;
  /** Milliseconds per segment: total time / segments (what matters when most calls are instant). */
  perSegmentMs?: number | undefined;
  /** Names of the rows this one is compared with (same section). */
  reference?: string[] | undefined;
  /** Free-form figure (e.g. peak .ready files, MiB/s). */
  value?: string | undefined;
  note?: string | undefined;
}

export interface BenchContext {
  quick: boolean;
  /** Scratch directory, removed at the end. */
  workDir: string;
  /** The real WAL segments every section measures on (with the cluster's pg_control). */
  wal: MadeSegments;
  /** How many segments a section that makes its own data should use (the same count as `wal`). */
  segments: number;
  log(line: string): void;
  record(row: Row): void;
  rows: Row[];
  /** Arguments after --, for sections that take their own. */
  args: string[];
}

/**
 * The contract of a section module: `export async function run(ctx: BenchContext)`. It adds rows
 * with ctx.record(); it may also return an object, whose numbers and strings are recorded as rows
 * of a section named after the module.
 */
export type BenchSection = (ctx: BenchContext) => Promise<unknown>;

/** The environment for walship and the tools: this process's, minus every WALSHIP_* variable, plus `extra`. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('WALSHIP_') && k !== 'PGDATA') env[k] = v;
  return { ...env, ...extra };
}

export interface Step {
  file: string;
  args: string[];
}

/** Run steps one after the other (as one timed unit); returns milliseconds; throws on a failure. */
export function timeSteps(steps: Step[], options: { cwd?: string; env?: NodeJS.ProcessEnv; okCodes?: number[] } = {}): number {
  const start = process.hrtime.bigint();
  for (const step of steps) {
    const r = spawnSync(step.file, step.args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'ignore', 'pipe'] });
    if (r.error) throw r.error;
    if (!(options.okCodes ?? [0]).includes(r.status ?? -1)) {
      throw new Error(`${step.file} ${step.args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr?.toString().trim().slice(0, 2000)}`);
    }
  }
  return Number(process.hrtime.bigint() - start) / 1e6;
}

export const median = (values: number[]): number => {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

/** fsync everything dirty, so one measurement does not pay for the previous one's writeback. */
export function settle(): void {
  spawnSync('sync');
}

/**
 * A stand-in data directory: global/pg_control and PG_VERSION of the cluster that wrote the
 * segments (pgBackRest reads them; walship's prefetch checks the system identifier), and pg_wal
 * with the segments hard-linked in (no copying: every variant reads the same cached pages).
 * With `ready`, each segment gets archive_status/<name>.ready, as PostgreSQL leaves them.
 */
export function makePgdata(dir: string, segments: MadeSegments, options: { withWal: boolean; ready: boolean }): string {
  fs.mkdirSync(path.join(dir, 'global'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'pg_wal', 'archive_status'), { recursive: true });
  fs.copyFileSync(path.join(segments.dir, 'pg_control'), path.join(dir, 'global', 'pg_control'));
  fs.writeFileSync(path.join(dir, 'PG_VERSION'), '15\n');
  if (options.withWal) {
    for (const name of segments.names) {
      fs.linkSync(path.join(segments.dir, name), path.join(dir, 'pg_wal', name));
      if (options.ready) fs.writeFileSync(path.join(dir, 'pg_wal', 'archive_status', `${name}.ready`), '');
    }
  }
  return dir;
}

/**
 * What PostgreSQL's archiver does: for each segment in order, run the archive command (timed), then
 * rename .ready to .done. Returns the per-call times.
 */
export function archiverLoop(pgdata: string, segments: MadeSegments, command: (walPath: string, name: string) => Step[], env: NodeJS.ProcessEnv): number[] {
  const times: number[] = [];
  for (const name of segments.names) {
    times.push(timeSteps(command(`pg_wal/${name}`, name), { cwd: pgdata, env }));
    const status = path.join(pgdata, 'pg_wal', 'archive_status');
    fs.renameSync(path.join(status, `${name}.ready`), path.join(status, `${name}.done`));
  }
  return times;
}

/** What recovery does: for each segment in order, run the restore command into pg_wal/RECOVERYXLOG (timed), then check the bytes (untimed). */
export function recoveryLoop(pgdata: string, segments: MadeSegments, command: (name: string, dest: string) => Step[], env: NodeJS.ProcessEnv): number[] {
  const times: number[] = [];
  const dest = path.join(pgdata, 'pg_wal', 'RECOVERYXLOG');
  for (const name of segments.names) {
    times.push(timeSteps(command(name, 'pg_wal/RECOVERYXLOG'), { cwd: pgdata, env }));
    const got = fs.readFileSync(dest);
    if (!got.equals(fs.readFileSync(path.join(segments.dir, name)))) throw new Error(`restore of ${name} produced different bytes`);
    fs.unlinkSync(dest);
  }
  return times;
}

const fmt = (ms: number | undefined) => (ms === undefined ? '' : ms >= 100 ? ms.toFixed(0) : ms.toFixed(1));

/** The table as Markdown (also printed as is: it reads fine in a terminal). */
export function table(rows: Row[]): string {
  const out: string[] = [];
  const sections = [...new Set(rows.map((r) => r.section))];
  for (const section of sections) {
    const list = rows.filter((r) => r.section === section);
    const byName = new Map(list.map((r) => [r.name, r]));
    out.push(`\n### ${section}\n`);
    out.push('| variant | median ms/call | total ms / segments | ratio (amortized) | other | note |');
    out.push('|---|---:|---:|---:|---|---|');
    for (const r of list) {
      const mine = r.perSegmentMs ?? r.medianMs;
      const ratio = (r.reference ?? [])
        .map((name) => {
          const ref = byName.get(name);
          const theirs = ref ? (ref.perSegmentMs ?? ref.medianMs) : undefined;
          return mine !== undefined && theirs ? `${(mine / theirs).toFixed(2)}× ${name}` : '';
        })
        .filter(Boolean)
        .join('<br>');
      out.push(`| ${r.name} | ${fmt(r.medianMs)} | ${fmt(r.perSegmentMs)} | ${ratio} | ${r.value ?? ''} | ${r.note ?? ''} |`);
    }
  }
  return out.join('\n');
}
