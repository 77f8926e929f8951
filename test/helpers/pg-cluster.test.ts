/**
 * Checks the real-PostgreSQL test helper on every supported major: clusters
 * start as the postgres OS user, archive, switch WAL, honour the WAL segment
 * size, and copies made by basebackup() recover from an archive to a target.
 * Clusters of different majors run concurrently.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import {
  basebackup,
  clientBinDir,
  makeServerOwnedDir,
  pgBinDir,
  pgVersions,
  startCluster,
  startFromDataDir,
} from './pg-cluster.ts';

const ARCHIVING = { archive_mode: 'on', archive_command: '/bin/true', wal_level: 'replica' } as const;

describe('pg-cluster helper', { concurrency: true }, () => {
  it('knows the majors and where their binaries are', () => {
    assert.deepEqual(pgVersions(), [14, 15, 16, 17, 18]);
    assert.equal(pgBinDir(15), '/usr/lib/postgresql/15/bin');
    for (const major of [14, 16, 17, 18]) {
      assert.match(pgBinDir(major), new RegExp(`node_modules/pg${major}/native/bin$`));
      assert.ok(fs.existsSync(path.join(pgBinDir(major), 'postgres')));
    }
    assert.ok(fs.existsSync(path.join(clientBinDir(), 'psql')));
  });

  for (const major of pgVersions()) {
    it(`PostgreSQL ${major}: starts as postgres, writes, archives`, async () => {
      await using c = await startCluster({ major, settings: ARCHIVING });
      assert.equal(await c.sql('SHOW server_version_num').then((v) => Math.floor(Number(v) / 10000)), major);
      assert.equal(await c.sql('SELECT current_user'), 'postgres');
      assert.equal(await c.sql('SHOW data_checksums'), 'on');
      assert.equal(await c.sql("SELECT usename FROM pg_stat_activity WHERE pid = pg_backend_pid()"), 'postgres');
      assert.equal(fs.statSync(path.join(c.dataDir, 'PG_VERSION')).uid, process.getuid?.() === 0 ? 101 : process.getuid?.());

      await c.sql('CREATE TABLE t (id int PRIMARY KEY, payload text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g');
      assert.equal(await c.sql('SELECT count(*) FROM t'), '1000');

      const before = Number(await c.sql('SELECT archived_count FROM pg_stat_archiver'));
      const seg = await c.sql('SELECT pg_walfile_name(pg_switch_wal())');
      assert.match(seg, /^[0-9A-F]{24}$/);
      await c.waitFor('SELECT archived_count FROM pg_stat_archiver', (o) => Number(o) > before, 20_000);
      await c.waitFor('SELECT last_archived_wal FROM pg_stat_archiver', seg, 20_000);

      await c.stop();
      assert.equal(c.running, false);
      await c.start();
      assert.equal(await c.sql('SELECT count(*) FROM t'), '1000');
      assert.match(c.log(), /database system is ready to accept connections/);
      await c.remove();
      assert.equal(fs.existsSync(c.baseDir), false);
    });
  }

  it('honours walSegmentSizeMB (1 MB on 17, 2 MB on 14)', async () => {
    await using a = await startCluster({ major: 17, walSegmentSizeMB: 1, settings: ARCHIVING });
    await using b = await startCluster({ major: 14, walSegmentSizeMB: 2, dataChecksums: false });
    assert.equal(await a.sql('SHOW wal_segment_size'), '1MB');
    assert.equal(await b.sql('SHOW wal_segment_size'), '2MB');
    assert.equal(await b.sql('SHOW data_checksums'), 'off');
    // 1 MB segments: 0x100 segments per "XXXXXXXX" log id
    await a.sql('CREATE TABLE w AS SELECT g, repeat(md5(g::text), 8) AS p FROM generate_series(1, 20000) g');
    const seg = await a.sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
    assert.ok(parseInt(seg.slice(16), 16) >= 3, `expected several 1 MB segments, at ${seg}`);
  });

  it('sql() errors carry psql stderr and the server log tail', async () => {
    await using c = await startCluster({ major: 16 });
    await assert.rejects(c.sql('SELECT * FROM no_such_table'), (e: Error) => {
      assert.match(e.message, /relation "no_such_table" does not exist/);
      assert.match(e.message, /log .*server\.log/);
      return true;
    });
    await c.pgbench(['-i', '-s', '1', '-q']);
    assert.equal(await c.sql('SELECT count(*) FROM pgbench_accounts'), '100000');
  });

  // pg_basebackup 15 on 14; the low-level API on 18 (pg_basebackup 15 refuses newer servers).
  for (const [major, action] of [
    [14, 'promote'],
    [18, 'pause'],
  ] as const) {
    it(`PostgreSQL ${major}: basebackup -X none + archive recovery to a restore point (${action})`, async () => {
      const archive = await makeServerOwnedDir('walship-arch-');
      await using src = await startCluster({
        major,
        settings: { archive_mode: 'on', wal_level: 'replica', archive_command: `test ! -f ${archive}/%f && cp %p ${archive}/%f` },
      });
      await src.sql('CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100)');
      const work = await makeServerOwnedDir('walship-restore-');
      const copy = path.join(work, 'data');
      const info = await basebackup(src, copy, { wal: 'none' });
      assert.equal(info.method, major <= 15 ? 'pg_basebackup' : 'lowlevel');
      assert.ok(fs.existsSync(path.join(copy, 'backup_label')));
      assert.equal(fs.existsSync(path.join(copy, 'postmaster.pid')), false);
      await src.sql("INSERT INTO t SELECT generate_series(101, 200); SELECT pg_create_restore_point('rp'); INSERT INTO t SELECT generate_series(201, 300)");
      const last = await src.sql('SELECT pg_walfile_name(pg_switch_wal())');
      await src.waitFor('SELECT last_archived_wal FROM pg_stat_archiver', last, 20_000);

      await using restored = await startFromDataDir(copy, major, {
        signal: 'recovery',
        wait: false,
        removeDataDir: true,
        settings: {
          archive_mode: 'off',
          restore_command: `cp ${archive}/%f %p`,
          recovery_target_name: 'rp',
          recovery_target_action: action,
        },
      });
      const outcome = await restored.waitForRecoveryEnd(30_000);
      assert.equal(outcome, action === 'promote' ? 'promoted' : 'paused');
      assert.equal(await restored.sql('SELECT count(*) FROM t'), '200');
      assert.equal(fs.statSync(copy).mode & 0o777, 0o700);
      if (action === 'pause') {
        await restored.sql('SELECT pg_promote()');
        await restored.waitFor('SELECT pg_is_in_recovery()', 'f');
      }
      await restored.sql('INSERT INTO t VALUES (0)');
      await restored.remove();
      assert.equal(fs.existsSync(copy), false);
    });
  }

  it('PostgreSQL 17: basebackup -X fetch starts on its own; recovery shutdown and failures are reported', async () => {
    await using src = await startCluster({ major: 17, settings: ARCHIVING });
    await src.sql('CREATE TABLE t AS SELECT generate_series(1, 500) AS id');
    const work = await makeServerOwnedDir('walship-restore-');
    await basebackup(src, path.join(work, 'a'));
    await using a = await startFromDataDir(path.join(work, 'a'), 17, { settings: { archive_mode: 'off' } });
    assert.equal(await a.sql('SELECT count(*) FROM t'), '500');
    assert.equal(await a.sql('SELECT pg_is_in_recovery()'), 'f');
    await a.stop('immediate');
    await a.start(); // crash recovery
    assert.equal(await a.sql('SELECT count(*) FROM t'), '500');

    // Target "immediate" + shutdown: the postmaster exits cleanly at consistency.
    await basebackup(src, path.join(work, 'b'));
    await using b = await startFromDataDir(path.join(work, 'b'), 17, {
      signal: 'recovery',
      wait: false,
      settings: { archive_mode: 'off', restore_command: 'false', recovery_target: 'immediate', recovery_target_action: 'shutdown' },
    });
    assert.equal(await b.waitForRecoveryEnd(30_000), 'shutdown');
    assert.equal(b.running, false);

    // An unreachable target: FATAL, the error carries the log tail.
    await basebackup(src, path.join(work, 'c'));
    await using c = await startFromDataDir(path.join(work, 'c'), 17, {
      signal: 'recovery',
      wait: false,
      settings: { archive_mode: 'off', restore_command: 'false', recovery_target_name: 'never_created' },
    });
    await assert.rejects(c.waitForRecoveryEnd(30_000), /exited \(exit code 1\) during recovery[\s\S]*recovery ended before configured recovery target was reached/);
  });
});
