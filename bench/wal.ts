/**
 * WAL per segment, as PostgreSQL drives it: the archiver runs the archive command once per ready
 * segment, in order, and renames .ready to .done after each; recovery runs the restore command once
 * per segment into pg_wal/RECOVERYXLOG. Every variant runs on the same segments in the same run.
 *
 * Push: walship one process per segment (zstd level 1, lz4, none), with lookahead, via the daemon;
 * cp + sync; zstd -1 + sync; lz4 -1 + sync; pgBackRest archive-push sync (zst level 1, lz4) and
 * async (zst level 1, process-max 2). Fetch: walship cold, with prefetch, via the daemon; cp;
 * pgBackRest archive-get sync and async.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { archiverLoop, cleanEnv, makePgdata, median, recoveryLoop, settle, sum, walshipBin, type BenchContext, type Step } from './lib.ts';
import { setupPgBackRest } from './pgbackrest.ts';

const PUSH = 'wal-push: archive one 16 MiB segment (file:// / local repository)';
const FETCH = 'wal-fetch: restore one 16 MiB segment';

export async function run(ctx: BenchContext): Promise<void> {
  const { wal: segments, workDir } = ctx;
  const n = segments.names.length;
  let variant = 0;
  const fresh = (label: string) => path.join(workDir, `${String(++variant).padStart(2, '0')}-${label}`);

  const record = (section: string, name: string, times: number[], reference: string[], note?: string) => {
    ctx.record({ section, name, medianMs: median(times), perSegmentMs: sum(times) / n, reference, note });
    ctx.log(`  ${name}: median ${median(times).toFixed(1)} ms, amortized ${(sum(times) / n).toFixed(1)} ms/segment`);
  };
  const refs = ['cp + sync', 'zstd -1 + sync', 'pgBackRest archive-push zst-1 sync'];

  // --- references ------------------------------------------------------------------------------
  const outDir = (label: string) => {
    const dir = fresh(label);
    fs.mkdirSync(dir, { recursive: true });
    return dir;
  };
  // Warm the compile cache and the page cache of the segments once, untimed.
  spawn(walshipBin, ['--version']).on('error', () => {});
  await sleep(500);
  for (const name of segments.names) fs.readFileSync(path.join(segments.dir, name));

  ctx.log('push: references');
  {
    const pgdata = makePgdata(fresh('cp'), segments, { withWal: true, ready: true });
    const out = outDir('cp-out');
    settle();
    const times = archiverLoop(pgdata, segments, (p, name) => [
      { file: 'cp', args: [p, path.join(out, name)] },
      { file: 'sync', args: [path.join(out, name)] },
    ], cleanEnv());
    record(PUSH, 'cp + sync', times, []);
  }
  {
    const pgdata = makePgdata(fresh('zstd'), segments, { withWal: true, ready: true });
    const out = outDir('zstd-out');
    settle();
    const times = archiverLoop(pgdata, segments, (p, name) => [
      { file: 'zstd', args: ['-q', '-1', p, '-o', path.join(out, `${name}.zst`)] },
      { file: 'sync', args: [path.join(out, `${name}.zst`)] },
    ], cleanEnv());
    record(PUSH, 'zstd -1 + sync', times, ['cp + sync']);
  }
  {
    const pgdata = makePgdata(fresh('lz4'), segments, { withWal: true, ready: true });
    const out = outDir('lz4-out');
    settle();
    const times = archiverLoop(pgdata, segments, (p, name) => [
      { file: 'lz4', args: ['-q', '-1', p, path.join(out, `${name}.lz4`)] },
      { file: 'sync', args: [path.join(out, `${name}.lz4`)] },
    ], cleanEnv());
    record(PUSH, 'lz4 -1 + sync', times, ['cp + sync']);
  }

  // --- pgBackRest ------------------------------------------------------------------------------
  ctx.log('push: pgBackRest 2.45');
  const pgbrZst = (() => {
    const dir = fresh('pgbr-zst');
    const pgdata = makePgdata(path.join(dir, 'pgdata'), segments, { withWal: true, ready: true });
    const pgbr = setupPgBackRest(path.join(dir, 'pgbr'), pgdata, { compressType: 'zst', compressLevel: 1 });
    settle();
    const times = archiverLoop(pgdata, segments, (p) => [{ file: 'pgbackrest', args: pgbr.args('archive-push', p) }], cleanEnv());
    record(PUSH, 'pgBackRest archive-push zst-1 sync', times, ['cp + sync', 'zstd -1 + sync']);
    return pgbr;
  })();
  {
    const dir = fresh('pgbr-lz4');
    const pgdata = makePgdata(path.join(dir, 'pgdata'), segments, { withWal: true, ready: true });
    const pgbr = setupPgBackRest(path.join(dir, 'pgbr'), pgdata, { compressType: 'lz4' });
    settle();
    const times = archiverLoop(pgdata, segments, (p) => [{ file: 'pgbackrest', args: pgbr.args('archive-push', p) }], cleanEnv());
    record(PUSH, 'pgBackRest archive-push lz4 sync', times, ['cp + sync', 'lz4 -1 + sync']);
  }
  {
    const dir = fresh('pgbr-async');
    const pgdata = makePgdata(path.join(dir, 'pgdata'), segments, { withWal: true, ready: true });
    const pgbr = setupPgBackRest(path.join(dir, 'pgbr'), pgdata, { compressType: 'zst', compressLevel: 1, async: true, processMax: 2 });
    settle();
    const times = archiverLoop(pgdata, segments, (p) => [{ file: 'pgbackrest', args: pgbr.args('archive-push', p) }], cleanEnv());
    record(PUSH, 'pgBackRest archive-push zst-1 async, process-max 2', times, ['cp + sync', 'pgBackRest archive-push zst-1 sync']);
  }

  // --- walship ---------------------------------------------------------------------------------
  ctx.log('push: walship');
  const walshipPush = (label: string, env: Record<string, string>, reference: string[], note?: string) => {
    const dir = fresh(label);
    const pgdata = makePgdata(path.join(dir, 'pgdata'), segments, { withWal: true, ready: true });
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    settle();
    const times = archiverLoop(pgdata, segments, (p) => [{ file: walshipBin, args: ['wal-push', p] }], cleanEnv({ WALSHIP_STORAGE: `file://${repo}`, ...env }));
    record(PUSH, label, times, reference, note);
    return repo;
  };
  const zstdRepo = walshipPush('walship zstd-1, one process per segment', { WALSHIP_LOOKAHEAD: '0', WALSHIP_COMPRESSION: 'zstd', WALSHIP_COMPRESSION_LEVEL: '1' }, refs);
  walshipPush('walship lz4, one process per segment', { WALSHIP_LOOKAHEAD: '0', WALSHIP_COMPRESSION: 'lz4' }, ['cp + sync', 'lz4 -1 + sync', 'pgBackRest archive-push lz4 sync']);
  walshipPush('walship none, one process per segment', { WALSHIP_LOOKAHEAD: '0', WALSHIP_COMPRESSION: 'none' }, ['cp + sync']);
  for (const [lookahead, concurrency] of ctx.quick ? [[8, 2]] : [[8, 1], [8, 2], [8, 3], [16, 2]]) {
    walshipPush(
      `walship zstd-1, lookahead ${lookahead}, ${concurrency} parallel`,
      { WALSHIP_LOOKAHEAD: String(lookahead), WALSHIP_UPLOAD_CONCURRENCY: String(concurrency) },
      [...refs, 'pgBackRest archive-push zst-1 async, process-max 2'],
    );
  }
  {
    const label = 'walship zstd-1, via daemon (2 parallel)';
    const dir = fresh('daemon');
    const pgdata = makePgdata(path.join(dir, 'pgdata'), segments, { withWal: true, ready: false });
    const repo = path.join(dir, 'repo');
    fs.mkdirSync(repo);
    const socket = path.join(dir, 'd.sock');
    const env = cleanEnv({ WALSHIP_STORAGE: `file://${repo}`, WALSHIP_DAEMON_SOCKET: socket, WALSHIP_METRICS_ADDRESS: 'off', WALSHIP_UPLOAD_CONCURRENCY: '2' });
    const daemon = await startDaemon(env, pgdata, socket);
    try {
      settle();
      // PostgreSQL marks segments ready as it fills them: here all at once, the daemon sees them when they appear.
      for (const name of segments.names) fs.writeFileSync(path.join(pgdata, 'pg_wal', 'archive_status', `${name}.ready`), '');
      const times = archiverLoop(pgdata, segments, (p) => [{ file: walshipBin, args: ['wal-push', p] }], env);
      record(PUSH, label, times, [...refs, 'pgBackRest archive-push zst-1 async, process-max 2']);
    } finally {
      await stopDaemon(daemon);
    }
  }

  // --- fetch -----------------------------------------------------------------------------------
  ctx.log('fetch');
  {
    const pgdata = makePgdata(fresh('fetch-cp'), segments, { withWal: false, ready: false });
    settle();
    const times = recoveryLoop(pgdata, segments, (name, dest) => [{ file: 'cp', args: [path.join(segments.dir, name), dest] }], cleanEnv());
    record(FETCH, 'cp', times, []);
  }
  {
    const pgdata = makePgdata(fresh('fetch-pgbr'), segments, { withWal: false, ready: false });
    const pgbr = pgbrZst.forPgdata(pgdata);
    settle();
    const times = recoveryLoop(pgdata, segments, (name, dest) => [{ file: 'pgbackrest', args: pgbr.args('archive-get', name, dest) }], cleanEnv());
    record(FETCH, 'pgBackRest archive-get (zst-1) sync', times, ['cp']);
  }
  {
    const pgdata = makePgdata(fresh('fetch-pgbr-async'), segments, { withWal: false, ready: false });
    const pgbr = pgbrZst.forPgdata(pgdata);
    settle();
    const args = (name: string, dest: string) => ['--archive-async', '--process-max=2', ...pgbr.args('archive-get', name, dest)];
    const times = recoveryLoop(pgdata, segments, (name, dest) => [{ file: 'pgbackrest', args: args(name, dest) }], cleanEnv());
    record(FETCH, 'pgBackRest archive-get (zst-1) async, process-max 2', times, ['cp', 'pgBackRest archive-get (zst-1) sync']);
  }
  const fetchRefs = ['cp', 'pgBackRest archive-get (zst-1) sync', 'pgBackRest archive-get (zst-1) async, process-max 2'];
  const walshipFetch = (label: string, env: Record<string, string>) => {
    const pgdata = makePgdata(fresh(label.replace(/\W+/g, '-')), segments, { withWal: false, ready: false });
    settle();
    const times = recoveryLoop(pgdata, segments, (name, dest) => [{ file: walshipBin, args: ['wal-fetch', name, dest] }], cleanEnv({ WALSHIP_STORAGE: `file://${zstdRepo}`, ...env }));
    record(FETCH, label, times, fetchRefs);
    // Removing the data directory stops its prefetcher.
    fs.rmSync(pgdata, { recursive: true, force: true });
  };
  walshipFetch('walship cold (no prefetch)', { WALSHIP_PREFETCH: '0' });
  walshipFetch('walship with prefetch (16 ahead, 2 parallel)', { WALSHIP_PREFETCH: '16', WALSHIP_DOWNLOAD_CONCURRENCY: '2' });
  {
    const label = 'walship via daemon (prefetch 16)';
    const dir = fresh('fetch-daemon');
    const pgdata = makePgdata(path.join(dir, 'pgdata'), segments, { withWal: false, ready: false });
    const socket = path.join(dir, 'd.sock');
    const env = cleanEnv({ WALSHIP_STORAGE: `file://${zstdRepo}`, WALSHIP_DAEMON_SOCKET: socket, WALSHIP_METRICS_ADDRESS: 'off' });
    const daemon = await startDaemon(env, undefined, socket);
    try {
      settle();
      const times = recoveryLoop(pgdata, segments, (name, dest) => [{ file: walshipBin, args: ['wal-fetch', name, dest] }], env);
      record(FETCH, label, times, fetchRefs);
    } finally {
      await stopDaemon(daemon);
    }
  }
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
