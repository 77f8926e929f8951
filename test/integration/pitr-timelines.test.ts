/**
 * Timelines and standbys through walship restore, on real PostgreSQL. A restore that promotes
 * starts timeline 2 and archives into the same repository; later restores follow the newest
 * timeline by default (PostgreSQL's 'latest', which restore's WAL check resolves the same way), or
 * stay on timeline 1 with --target-timeline. A --standby restore keeps replaying what the
 * primary archives after the restore.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { startFromDataDir } from '../helpers/pg-cluster.ts';
import { archivingCluster, makeRepository, pgEnv, restoreTarget, walshipOk } from './backup-support.ts';

const major = 16;
const batches = async (cluster: { sql(q: string): Promise<string> }) => (await cluster.sql("SELECT batch || ':' || count(*) FROM events GROUP BY batch ORDER BY batch")).split('\n').join(',');

describe(`timelines and standbys on PostgreSQL ${major}`, { concurrency: 2 }, () => {
  test('a promoted restore archives timeline 2; restores follow it by default, or stay on timeline 1', { timeout: 240_000 }, async () => {
    const repo = await makeRepository();
    await using primary = await archivingCluster(major, repo);
    await primary.sql("CREATE TABLE events (batch text); INSERT INTO events SELECT 'base' FROM generate_series(1, 10)");
    await walshipOk(['--config', repo.config, 'backup-push', '--fast'], { env: pgEnv(primary) });
    await primary.sql("INSERT INTO events SELECT 'p1' FROM generate_series(1, 10)");
    const branch = await primary.sql('SELECT clock_timestamp()::text');
    await primary.sql("INSERT INTO events SELECT 'p2' FROM generate_series(1, 10)");
    const last = await primary.sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
    await primary.sql('SELECT pg_switch_wal()');
    await primary.waitFor(`SELECT last_archived_wal >= '${last}' FROM pg_stat_archiver`, 't');

    // Restore to the branch point and promote, archiving into the same repository (timeline 2).
    const first = await restoreTarget();
    await walshipOk(['--config', repo.config, 'restore', first, '--target-time', branch, '--target-action', 'promote']);
    {
      await using promoted = await startFromDataDir(first, major, { wait: false, removeDataDir: true });
      assert.equal(await promoted.waitForRecoveryEnd(), 'promoted');
      assert.equal(await promoted.sql('SELECT timeline_id FROM pg_control_checkpoint()'), '2');
      await promoted.sql("INSERT INTO events SELECT 'r1' FROM generate_series(1, 10)");
      const tl2 = await promoted.sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
      await promoted.sql('SELECT pg_switch_wal()');
      await promoted.waitFor(`SELECT last_archived_wal >= '${tl2}' FROM pg_stat_archiver`, 't');
      assert.equal(await batches(promoted), 'base:10,p1:10,r1:10');
    }

    // Default: the newest timeline (2): the branch, then what the promoted server wrote.
    const latest = await restoreTarget();
    const plan = await walshipOk(['--config', repo.config, 'restore', latest]);
    assert.match(plan.stdout, /on timeline 2/);
    {
      await using copy = await startFromDataDir(latest, major, { wait: false, removeDataDir: true, settings: { archive_mode: 'off', recovery_target_action: 'promote' } });
      assert.equal(await copy.waitForRecoveryEnd(), 'promoted');
      assert.equal(await batches(copy), 'base:10,p1:10,r1:10');
    }

    // --target-timeline 1: the original history, to its end.
    const original = await restoreTarget();
    await walshipOk(['--config', repo.config, 'restore', original, '--target-timeline', '1']);
    assert.match(await readFile(join(original, 'postgresql.auto.conf'), 'utf8'), /^recovery_target_timeline = '1'$/m);
    {
      await using copy = await startFromDataDir(original, major, { wait: false, removeDataDir: true, settings: { archive_mode: 'off' } });
      assert.equal(await copy.waitForRecoveryEnd(), 'promoted');
      assert.equal(await batches(copy), 'base:10,p1:10,p2:10');
    }
  });

  test('--standby: the restored server stays in recovery and replays what the primary archives later', { timeout: 180_000 }, async () => {
    const repo = await makeRepository();
    await using primary = await archivingCluster(major, repo);
    await primary.sql("CREATE TABLE events (batch text); INSERT INTO events SELECT 'base' FROM generate_series(1, 10)");
    await walshipOk(['--config', repo.config, 'backup-push', '--fast'], { env: pgEnv(primary) });
    const target = await restoreTarget();
    await walshipOk(['--config', repo.config, 'restore', target, '--standby']);
    const conf = await readFile(join(target, 'postgresql.auto.conf'), 'utf8');
    assert.match(conf, /^restore_command = '\S+ --config \S+ wal-fetch --standby %f %p'$/m);
    await using standby = await startFromDataDir(target, major, { removeDataDir: true, settings: { archive_mode: 'off', hot_standby: 'on' } });
    await standby.waitFor('SELECT pg_is_in_recovery()', 't');
    await standby.waitFor('SELECT count(*) FROM events', '10');
    await primary.sql("INSERT INTO events SELECT 'later' FROM generate_series(1, 5)");
    await primary.sql('SELECT pg_switch_wal()');
    await standby.waitFor('SELECT count(*) FROM events', '15', 60_000);
    assert.equal(await standby.sql('SELECT pg_is_in_recovery()'), 't');
  });
});
