/**
 * Issue 5's end-to-end contract on real PostgreSQL 14–18: the server archives through walship,
 * `walship backup-push` runs while pgbench writes, then rows are committed at known times and
 * LSNs, a restore point is created and the table dropped. `walship restore` brings each target
 * back into a fresh directory; PostgreSQL started on it replays to the target by itself (through
 * the restore_command restore wrote) and holds exactly what was committed at the target.
 * The full set of targets runs on 17; the other majors do a time target and --immediate.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { clientBin, startFromDataDir, type Cluster } from '../helpers/pg-cluster.ts';
import { execFileSync } from 'node:child_process';
import { archivingCluster, makeRepository, pgEnv, restoreTarget, walship, walshipOk, type Repository } from './backup-support.ts';

interface Timeline {
  /** Before the backup started. */
  beforeBackup: string;
  afterA: string;
  afterB: string;
  /** The transaction that inserted batch B. */
  xidB: string;
  restorePoint: string;
}

const batches = (rows: string) => rows.split('\n').filter(Boolean).join(',');

/** Build the history every restore is checked against; returns the instants of the targets. */
async function writeHistory(primary: Cluster, repo: Repository): Promise<Timeline> {
  await primary.sql("CREATE TABLE events (id serial PRIMARY KEY, batch text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())");
  await primary.sql("INSERT INTO events (batch) SELECT 'base' FROM generate_series(1, 1000)");
  await primary.pgbench(['-i', '-s', '2', '-q']);
  const beforeBackup = await primary.sql('SELECT clock_timestamp()::text');
  // The backup runs while pgbench writes.
  const load = primary.pgbench(['-n', '-c', '2', '-T', '4']);
  const push = walshipOk(['--config', repo.config, 'backup-push', '--fast'], { env: pgEnv(primary) });
  const [, pushed] = await Promise.all([load, push]);
  assert.match(pushed.stderr, /backup base_[0-9A-F]{24} complete: .* MiB\/s\), stored /);

  await primary.sql("INSERT INTO events (batch) SELECT 'A' FROM generate_series(1, 100)");
  const afterA = await primary.sql('SELECT clock_timestamp()::text');
  const xidB = await primary.sql("BEGIN; INSERT INTO events (batch) SELECT 'B' FROM generate_series(1, 100); SELECT pg_current_xact_id(); COMMIT;");
  const afterB = await primary.sql('SELECT pg_current_wal_lsn()::text');
  await primary.sql("INSERT INTO events (batch) SELECT 'C' FROM generate_series(1, 100)");
  await primary.sql("SELECT pg_create_restore_point('before_drop')");
  await primary.sql("INSERT INTO events (batch) SELECT 'D' FROM generate_series(1, 100)");
  await primary.sql('DROP TABLE events');
  const last = await primary.sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
  await primary.sql('SELECT pg_switch_wal()');
  await primary.waitFor(`SELECT last_archived_wal >= '${last}' FROM pg_stat_archiver`, 't', 60_000);
  return { beforeBackup, afterA, afterB, xidB, restorePoint: 'before_drop' };
}

/** Restore into a fresh directory, start PostgreSQL on it, and return the batches it holds. */
async function restoreAndCount(major: number, repo: Repository, args: string[], check?: (copy: Cluster) => Promise<void>): Promise<string> {
  const target = await restoreTarget(`walship-pitr${major}-`);
  const restored = await walshipOk(['--config', repo.config, 'restore', target, ...args, '--target-action', 'promote']);
  assert.match(restored.stdout, /restored backup base_/);
  // The restored server must not archive into the repository it is restored from.
  await using copy = await startFromDataDir(target, major, { wait: false, removeDataDir: true, settings: { archive_mode: 'off' } });
  assert.equal(await copy.waitForRecoveryEnd(120_000), 'promoted');
  await check?.(copy);
  // pgbench's invariant holds at every consistent point: each transaction updates an account and logs the delta.
  assert.equal(await copy.sql('SELECT sum(abalance) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history) FROM pgbench_accounts'), 't');
  return batches(await copy.sql("SELECT batch || ':' || count(*) FROM events GROUP BY batch ORDER BY batch"));
}

const cases = [
  { major: 14, full: false, compression: 'lz4' },
  { major: 15, full: false, compression: 'zstd', amcheck: true },
  { major: 16, full: false, compression: 'none' },
  { major: 17, full: true, compression: 'zstd' },
  { major: 18, full: false, compression: 'zstd' },
];

describe('point-in-time recovery with walship restore', { concurrency: 2 }, () => {
  for (const { major, full, compression, amcheck } of cases) {
    test(`PostgreSQL ${major} (${compression}): ${full ? 'time, LSN, restore point, xid, --immediate, before the oldest backup' : 'time, --immediate'}`, { timeout: 300_000 }, async () => {
      const repo = await makeRepository({ compression, backupPartSize: '8MiB' });
      await using primary = await archivingCluster(major, repo);
      const at = await writeHistory(primary, repo);

      const list = JSON.parse((await walshipOk(['--config', repo.config, 'backup-list', '--json'])).stdout) as { name: string; pgMajor: number; timeline: number }[];
      assert.equal(list.length, 1);
      assert.equal(list[0]!.pgMajor, major);

      assert.equal(
        await restoreAndCount(major, repo, ['--target-time', at.afterA], amcheck ? async (copy) => {
          execFileSync(clientBin('pg_amcheck'), ['-h', copy.host, '-p', String(copy.port), '-U', 'postgres', '--install-missing', '--heapallindexed', 'postgres'], { stdio: 'pipe' });
        } : undefined),
        'A:100,base:1000',
      );
      assert.equal(await restoreAndCount(major, repo, ['--immediate']), 'base:1000');
      if (!full) return;
      assert.equal(await restoreAndCount(major, repo, ['--target-lsn', at.afterB]), 'A:100,B:100,base:1000');
      assert.equal(await restoreAndCount(major, repo, ['--target-name', at.restorePoint]), 'A:100,B:100,C:100,base:1000');
      assert.equal(await restoreAndCount(major, repo, ['--target-xid', at.xidB]), 'A:100,B:100,base:1000');

      const refused = await walship(['--config', repo.config, 'restore', await restoreTarget(), '--target-time', at.beforeBackup]);
      assert.equal(refused.code, 3, refused.stderr);
      assert.match(refused.stderr, /no backup ends before the target time .*; the earliest restorable time is \S+ \(the end of backup base_/);
    });
  }
});
