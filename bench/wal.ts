/**
 * WAL per segment, as PostgreSQL drives it: the archiver runs the archive command once per ready
 * segment, in order, and renames .ready to .done after each; recovery runs the restore command once
 * per segment into pg_wal/RECOVERYXLOG. Every variant runs on the same segments in the same run.
 *
 * Push: walship one process per segment (zstd level 1, lz4, none), with lookahead, via the daemon;
 * cp + sync; zstd -1 + sync; lz4 -1 + sync; pgBackRest archive-push sync (zst level 1, lz4) and
 * async (zst level 1, process-max 2). Fetch: walship cold, with prefetch, via the daemon; cp;
 * pgBackRest archive-get sync and async.
 *
 * This machine is shared and its load drifts, so:
 * - the one-call-per-segment variants are interleaved: segment i is pushed by every variant in
 *   turn (starting with a different one each time) before segment i+1; drift hits all alike;
 * - variants that work ahead in the background (lookahead, daemon, async, prefetch) cannot be
 *   interleaved (their background work would run during the others' timings): each runs as a
 *   block, twice, in forward then reverse order, and the figures are the mean of the two rounds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cleanEnv, makePgdata, median, settle, sum, timeSteps, walshipBin, type BenchContext, type Step } from './lib.ts';
import { setupPgBackRest, type PgBackRest } from './pgbackrest.ts';
import type { MadeSegments } from './segments.ts';

const PUSH = 'wal-push: archive one 16 MiB segment (local repository)';
const FETCH = 'wal-fetch: restore one 16 MiB segment';

interface Lane {
  name: string;
  reference: string[];
  note?: string;
  /** Prepare a fresh data directory (and repository), return how to run one call. */
  prepare(dir: string): Promise<LaneRun> | LaneRun;
}

interface LaneRun {
  pgdata: string;
  env: NodeJS.ProcessEnv;
  step(name: string): Step[];
  teardown?(): Promise<void>;
}

export async function run(ctx: BenchContext): Promise<void> {
  const { wal: segments, workDir } = ctx;
  let counter = 0;
  const fresh = (label: string) => {
    const dir = path.join(workDir, `${String(++counter).padStart(2, '0')}-${label.replace(/[^a-z0-9]+/gi, '-').slice(0, 40)}`);
    fs.mkdirSync(dir, { recursive: true });
    return dir;
  };
  const record = (section: string, lane: Lane, rounds: number[][]) => {
    const all = rounds.flat();
    const perSegment = rounds.reduce((a, times) => a + sum(times) / times.length, 0) / rounds.length;
    ctx.record({ section, name: lane.name, medianMs: median(all), perSegmentMs: perSegment, reference: lane.reference, note: lane.note });
    ctx.log(`  ${lane.name}: median ${median(all).toFixed(1)} ms, amortized ${perSegment.toFixed(1)} ms/segment`);
  };

  // Warm the compile cache and the page cache of the segments once, untimed.
  timeSteps([{ file: walshipBin, args: ['--version'] }]);
  for (const name of segments.names) fs.readFileSync(path.join(segments.dir, name));

  const refs = ['cp + sync', 'zstd -1 + sync', 'pgBackRest archive-push zst-1 sync'];
  const asyncRefs = [...refs, 'pgBackRest archive-push zst-1 async, process-max 2'];
  const copyTo = (label: string, tool: (src: string, out: string) => Step[]): Lane['prepare'] => (dir) => {
    const pgdata = makePgdata(path.join(dir, 'pgdata'), segments, { withWal: true, ready: true });
    const out = path.join(dir, 'out');
    fs.mkdirSync(out);
    return { pgdata, env: cleanEnv(), step: (name) => [...tool(`pg_wal/${name}`, path.join(out, `${name}${label}`)), { file: 'sync', args: [path.join(out, `${name}${label}`)] }] };
  };
  const pgbrPush = (options: Parameters<typeof setupPgBackRest>[2]): Lane['prepare'] => (dir) => {
    const pgdata = makePgdata(path.join(dir, 'pgdata'), segments, { withWal: true, ready: true });
    const pgbr = setupPgBackRest(path.join(dir, 'pgbr'), pgdata, options);
    return { pgdata, env: cleanEnv(), step: (name) => [{ file: 'pgbackrest', args: pgbr.args('archive-push', `pg_wal/${name}`) }] };
  };
  const walshipPush = (settings: Record<string, string>): Lane['prepare'] => (dir) => {
    const pgdata = makePgdata(path.join(dir, 'pgdata'), segments, { withWal: true, ready: true });
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    return { pgdata, env: cleanEnv({ WALSHIP_STORAGE: `file://${repo}`, ...settings }), step: (name) => [{ file: walshipBin, args: ['wal-push', `pg_wal/${name}`] }] };
  };

  // --- push, one call per segment: interleaved --------------------------------------------------
  ctx.log('push: one call per segment (interleaved)');
  let pgbrZst: PgBackRest | undefined;
  let zstdRepo = '';
  const syncPush: Lane[] = [
    { name: 'cp + sync', reference: [], prepare: copyTo('', (src, out) => [{ file: 'cp', args: [src, out] }]) },
    { name: 'zstd -1 + sync', reference: ['cp + sync'], prepare: copyTo('.zst', (src, out) => [{ file: 'zstd', args: ['-q', '-1', src, '-o', out] }]) },
    { name: 'lz4 -1 + sync', reference: ['cp + sync'], prepare: copyTo('.lz4', (src, out) => [{ file: 'lz4', args: ['-q', '-1', src, out] }]) },
    {
      name: 'pgBackRest archive-push zst-1 sync',
      reference: ['cp + sync', 'zstd -1 + sync'],
      prepare: (dir) => {
        const pgdata = makePgdata(path.join(dir, 'pgdata'), segments, { withWal: true, ready: true });
        const pgbr = setupPgBackRest(path.join(dir, 'pgbr'), pgdata, { compressType: 'zst', compressLevel: 1 });
        pgbrZst = pgbr;
        return { pgdata, env: cleanEnv(), step: (name) => [{ file: 'pgbackrest', args: pgbr.args('archive-push', `pg_wal/${name}`) }] };
      },
    },
    { name: 'pgBackRest archive-push lz4 sync', reference: ['cp + sync', 'lz4 -1 + sync'], prepare: pgbrPush({ compressType: 'lz4' }) },
    {
      name: 'walship zstd-1, one process per segment',
      reference: refs,
      prepare: (dir) => {
        zstdRepo = path.join(dir, 'repo');
        return walshipPush({ WALSHIP_LOOKAHEAD: '0', WALSHIP_COMPRESSION: 'zstd', WALSHIP_COMPRESSION_LEVEL: '1' })(dir) as LaneRun;
      },
    },
    { name: 'walship lz4, one process per segment', reference: ['cp + sync', 'lz4 -1 + sync', 'pgBackRest archive-push lz4 sync'], prepare: walshipPush({ WALSHIP_LOOKAHEAD: '0', WALSHIP_COMPRESSION: 'lz4' }) },
    { name: 'walship none, one process per segment', reference: ['cp + sync'], prepare: walshipPush({ WALSHIP_LOOKAHEAD: '0', WALSHIP_COMPRESSION: 'none' }) },
  ];
  const pushTimes = await interleaved(syncPush, segments, fresh, 'archive');
  syncPush.forEach((lane, i) => record(PUSH, lane, [pushTimes[i]!]));

  // --- push, working ahead: blocks, two rounds --------------------------------------------------
  ctx.log('push: working ahead (blocks, two rounds)');
  const aheadPush: Lane[] = [
    {
      name: 'pgBackRest archive-push zst-1 async, process-max 2',
      reference: ['cp + sync', 'pgBackRest archive-push zst-1 sync'],
      prepare: pgbrPush({ compressType: 'zst', compressLevel: 1, async: true, processMax: 2 }),
    },
    ...(ctx.quick ? [[8, 2]] : [[8, 1], [8, 2], [8, 3], [16, 2]]).map(([lookahead, concurrency]) => ({
      name: `walship zstd-1, lookahead ${lookahead}, ${concurrency} parallel`,
      reference: asyncRefs,
      prepare: walshipPush({ WALSHIP_LOOKAHEAD: String(lookahead), WALSHIP_UPLOAD_CONCURRENCY: String(concurrency) }),
    })),
    {
      name: 'walship zstd-1, via daemon (2 parallel)',
      reference: asyncRefs,
      prepare: async (dir) => {
        const pgdata = makePgdata(path.join(dir, 'pgdata'), segments, { withWal: true, ready: false });
        const repo = path.join(dir, 'repo');
        fs.mkdirSync(repo);
        const socket = path.join(dir, 'd.sock');
        const env = cleanEnv({ WALSHIP_STORAGE: `file://${repo}`, WALSHIP_DAEMON_SOCKET: socket, WALSHIP_METRICS_ADDRESS: 'off', WALSHIP_UPLOAD_CONCURRENCY: '2' });
        const daemon = await startDaemon(env, pgdata, socket);
        // PostgreSQL marks segments ready as it fills them; here all at once, after the daemon started.
        for (const name of segments.names) fs.writeFileSync(path.join(pgdata, 'pg_wal', 'archive_status', `${name}.ready`), '');
        return { pgdata, env, step: (name) => [{ file: walshipBin, args: ['wal-push', `pg_wal/${name}`] }], teardown: () => stopDaemon(daemon) };
      },
    },
  ];
  await blocks(aheadPush, segments, fresh, 'archive', (lane, rounds) => record(PUSH, lane, rounds));

  // --- fetch ----------------------------------------------------------------------------------
  const fetchRefs = ['cp', 'pgBackRest archive-get (zst-1) sync', 'pgBackRest archive-get (zst-1) async, process-max 2'];
  const emptyPgdata = (dir: string) => makePgdata(path.join(dir, 'pgdata'), segments, { withWal: false, ready: false });
  const walshipFetch = (settings: Record<string, string>): Lane['prepare'] => (dir) => ({
    pgdata: emptyPgdata(dir),
    env: cleanEnv({ WALSHIP_STORAGE: `file://${zstdRepo}`, ...settings }),
    step: (name) => [{ file: walshipBin, args: ['wal-fetch', name, 'pg_wal/RECOVERYXLOG'] }],
    // Removing the data directory stops its prefetcher.
    teardown: async () => fs.rmSync(path.join(dir, 'pgdata'), { recursive: true, force: true }),
  });
  const pgbrGet = (extra: string[]): Lane['prepare'] => (dir) => {
    const pgdata = emptyPgdata(dir);
    const pgbr = pgbrZst!.forPgdata(pgdata);
    return { pgdata, env: cleanEnv(), step: (name) => [{ file: 'pgbackrest', args: [...extra, ...pgbr.args('archive-get', name, 'pg_wal/RECOVERYXLOG')] }] };
  };
  ctx.log('fetch: one call per segment (interleaved)');
  const syncFetch: Lane[] = [
    { name: 'cp', reference: [], prepare: (dir) => ({ pgdata: emptyPgdata(dir), env: cleanEnv(), step: (name) => [{ file: 'cp', args: [path.join(segments.dir, name), 'pg_wal/RECOVERYXLOG'] }] }) },
    { name: 'pgBackRest archive-get (zst-1) sync', reference: ['cp'], prepare: pgbrGet([]) },
    { name: 'walship cold (no prefetch)', reference: fetchRefs, prepare: walshipFetch({ WALSHIP_PREFETCH: '0' }) },
  ];
  const fetchTimes = await interleaved(syncFetch, segments, fresh, 'recover');
  syncFetch.forEach((lane, i) => record(FETCH, lane, [fetchTimes[i]!]));

  ctx.log('fetch: working ahead (blocks, two rounds)');
  const aheadFetch: Lane[] = [
    { name: 'pgBackRest archive-get (zst-1) async, process-max 2', reference: ['cp', 'pgBackRest archive-get (zst-1) sync'], prepare: pgbrGet(['--archive-async', '--process-max=2']) },
    { name: 'walship with prefetch (16 ahead, 2 parallel)', reference: fetchRefs, prepare: walshipFetch({ WALSHIP_PREFETCH: '16', WALSHIP_DOWNLOAD_CONCURRENCY: '2' }) },
    {
      name: 'walship via daemon (prefetch 16)',
      reference: fetchRefs,
      prepare: async (dir) => {
        const socket = path.join(dir, 'd.sock');
        const env = cleanEnv({ WALSHIP_STORAGE: `file://${zstdRepo}`, WALSHIP_DAEMON_SOCKET: socket, WALSHIP_METRICS_ADDRESS: 'off' });
        const daemon = await startDaemon(env, undefined, socket);
        return { pgdata: emptyPgdata(dir), env, step: (name) => [{ file: walshipBin, args: ['wal-fetch', name, 'pg_wal/RECOVERYXLOG'] }], teardown: () => stopDaemon(daemon) };
      },
    },
  ];
  await blocks(aheadFetch, segments, fresh, 'recover', (lane, rounds) => record(FETCH, lane, rounds));
}

/** One call of `kind` for segment `name` in `run`'s data directory, timed; then what PostgreSQL does after it. */
function oneCall(run: LaneRun, segments: MadeSegments, name: string, kind: 'archive' | 'recover'): number {
  const ms = timeSteps(run.step(name), { cwd: run.pgdata, env: run.env });
  if (kind === 'archive') {
    const status = path.join(run.pgdata, 'pg_wal', 'archive_status');
    fs.renameSync(path.join(status, `${name}.ready`), path.join(status, `${name}.done`));
  } else {
    const dest = path.join(run.pgdata, 'pg_wal', 'RECOVERYXLOG');
    if (!fs.readFileSync(dest).equals(fs.readFileSync(path.join(segments.dir, name)))) throw new Error(`restore of ${name} produced different bytes`);
    fs.unlinkSync(dest);
  }
  return ms;
}

async function interleaved(lanes: Lane[], segments: MadeSegments, fresh: (label: string) => string, kind: 'archive' | 'recover'): Promise<number[][]> {
  const runs: LaneRun[] = [];
  for (const lane of lanes) runs.push(await lane.prepare(fresh(lane.name)));
  const times = lanes.map(() => [] as number[]);
  settle();
  segments.names.forEach((name, i) => {
    for (let k = 0; k < lanes.length; k++) {
      const j = (i + k) % lanes.length;
      times[j]!.push(oneCall(runs[j]!, segments, name, kind));
    }
  });
  for (const run of runs) await run.teardown?.();
  return times;
}

async function blocks(lanes: Lane[], segments: MadeSegments, fresh: (label: string) => string, kind: 'archive' | 'recover', done: (lane: Lane, rounds: number[][]) => void): Promise<void> {
  const rounds = new Map<Lane, number[][]>();
  for (const order of [lanes, [...lanes].reverse()]) {
    for (const lane of order) {
      const run = await lane.prepare(fresh(lane.name));
      settle();
      try {
        rounds.set(lane, [...(rounds.get(lane) ?? []), segments.names.map((name) => oneCall(run, segments, name, kind))]);
      } finally {
        await run.teardown?.();
      }
    }
  }
  for (const lane of lanes) done(lane, rounds.get(lane)!);
}

export async function startDaemon(env: NodeJS.ProcessEnv, pgdata: string | undefined, socket: string): Promise<ChildProcess> {
  const child = spawn(walshipBin, ['daemon', ...(pgdata ? ['--pgdata', pgdata] : [])], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  for (let i = 0; i < 100; i++) {
    if (fs.existsSync(socket)) return child;
    if (child.exitCode !== null) break;
    await sleep(100);
  }
  child.kill('SIGKILL');
  throw new Error(`walship daemon did not start: ${stderr}`);
}

export async function stopDaemon(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(30_000)]);
  if (child.exitCode === null) child.kill('SIGKILL');
}
