/**
 * Real PostgreSQL 15 archiving with the throughput features on:
 * - lookahead (WALSHIP_LOOKAHEAD=8, 2 parallel uploads): pg_stat_archiver.failed_count stays 0,
 *   every segment PostgreSQL wrote is in the repository, and no marker is left once the archiver
 *   caught up;
 * - the daemon (run as the postgres user, watching the data directory): same checks; then a copy
 *   of the cluster recovers through `wal-fetch` with prefetch (through the daemon) to the end of
 *   the archive, with every row.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { basebackup, makeServerOwnedDir, serverUser, startCluster, startFromDataDir, type Cluster } from '../helpers/pg-cluster.ts';
import { requireBuiltCli, runWalship, walshipBin } from '../helpers/cli.ts';
import { segmentFileName } from '../../src/pg/wal-names.ts';

requireBuiltCli();

const ARCHIVING = { archive_mode: 'on', wal_level: 'replica', archive_command: `${walshipBin} wal-push %p`, archive_timeout: 0 } as const;

/** Write WAL: pgbench plus segment switches; returns the last segment written. */
async function workload(c: Cluster, rounds: number): Promise<string> {
  await c.pgbench(['-i', '-s', '2', '-q']);
  for (let i = 0; i < rounds; i++) {
    await c.pgbench(['-n', '-c', '2', '-T', '1']);
    await c.sql('SELECT pg_switch_wal()');
  }
  await c.sql('CREATE TABLE marker (n int)');
  await c.sql('INSERT INTO marker SELECT generate_series(1, 1234)');
  const last = await c.sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
  await c.sql('SELECT pg_switch_wal()');
  await c.waitFor(`SELECT last_archived_wal >= '${last}' FROM pg_stat_archiver`, 't', 120_000);
  await c.waitFor("SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'", '0', 60_000);
  return last;
}

/** Every segment of timeline 1 up to `last` is in the repository; nothing failed; no marker is left. */
async function checkArchive(c: Cluster, repo: string, last: string): Promise<void> {
  assert.equal(await c.sql('SELECT failed_count FROM pg_stat_archiver'), '0', 'no archive_command failure');
  const stored = new Set(readdirSync(join(repo, 'wal')));
  const lastSeg = BigInt(`0x${last.slice(8, 16)}`) * 256n + BigInt(`0x${last.slice(16)}`);
  for (let seg = 1n; seg <= lastSeg; seg++) {
    const name = segmentFileName(1, seg, 16 * 1024 * 1024);
    assert.ok(stored.has(name), `${name} is not in the repository`);
  }
  const markers = join(c.dataDir, 'pg_wal', 'walship', 'archived');
  assert.deepEqual(existsSync(markers) ? readdirSync(markers) : [], [], 'no marker left');
}

async function repository(): Promise<string> {
  const dir = await makeServerOwnedDir('walship-tp-repo-');
  const repo = join(dir, 'repo');
  const { mkdir, chown } = await import('node:fs/promises');
  await mkdir(repo);
  await chown(repo, serverUser().uid, serverUser().gid);
  return repo;
}

describe('real PostgreSQL 15 archiving with lookahead and the daemon', { concurrency: 1 }, () => {
  test('lookahead: no failure, every segment archived, no marker left', { timeout: 300_000 }, async () => {
    const repo = await repository();
    await using c = await startCluster({
      major: 15,
      settings: ARCHIVING,
      env: { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_LOOKAHEAD: '8', WALSHIP_UPLOAD_CONCURRENCY: '2' },
    });
    const last = await workload(c, 8);
    await checkArchive(c, repo, last);
  });

  test('daemon: continuous archiving, then recovery with prefetch through it', { timeout: 300_000 }, async () => {
    const repo = await repository();
    const run = await makeServerOwnedDir('walship-tp-run-');
    const socket = join(run, 'daemon.sock');
    const env = { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_DAEMON_SOCKET: socket, WALSHIP_METRICS_ADDRESS: 'off' };
    await using c = await startCluster({ major: 15, settings: ARCHIVING, env });
    await c.sql('CREATE TABLE before_backup (n int)');
    const copyDir = join(await makeServerOwnedDir('walship-tp-copy-'), 'data');
    await basebackup(c, copyDir, { wal: 'none' });

    const daemon = startDaemon(['daemon', '--pgdata', c.dataDir], env);
    try {
      await waitForFile(socket);
      const last = await workload(c, 8);
      await checkArchive(c, repo, last);
      const rows = await c.sql('SELECT count(*) FROM pgbench_accounts');

      await using copy = await startFromDataDir(copyDir, 15, {
        signal: 'recovery',
        wait: false,
        removeDataDir: true,
        env: { ...env, WALSHIP_PREFETCH: '8' },
        settings: { archive_mode: 'off', restore_command: `${walshipBin} wal-fetch %f %p`, recovery_target_action: 'promote' },
      });
      assert.equal(await copy.waitForRecoveryEnd(180_000), 'promoted');
      assert.equal(await copy.sql('SELECT count(*) FROM marker'), '1234');
      assert.equal(await copy.sql('SELECT count(*) FROM pgbench_accounts'), rows);
      const status = await runWalship(['daemon', 'status', '--json'], { env });
      assert.equal(status.code, 0, status.stderr);
      const counters = JSON.parse(status.stdout) as { pushed: number; fetched: number; failures: number };
      assert.ok(counters.pushed > 0, 'the daemon archived');
      assert.ok(counters.fetched > 0, 'the daemon served wal-fetch');
      assert.equal(counters.failures, 0);
    } finally {
      await stopDaemon(daemon);
    }
  });
});

function startDaemon(args: string[], env: Record<string, string>): ChildProcess {
  const user = serverUser();
  return spawn(walshipBin, args, {
    env: { PATH: process.env.PATH!, HOME: '/tmp', ...env },
    stdio: 'ignore',
    cwd: '/',
    ...(process.getuid?.() === 0 ? { uid: user.uid, gid: user.gid } : {}),
  });
}

async function stopDaemon(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(30_000)]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

async function waitForFile(path: string): Promise<void> {
  for (let i = 0; i < 200 && !existsSync(path); i++) await sleep(50);
  assert.ok(existsSync(path), `${path} did not appear`);
}
