/**
 * Issue 3's end-to-end contract on real PostgreSQL 14–18: the server archives through
 * `walship wal-push %p` (the built CLI, by absolute path, as the postgres user), and a copy of
 * the cluster recovers through `walship wal-fetch %f %p` to a named restore point, with exactly
 * the rows committed before it.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { basebackup, makeServerOwnedDir, pgVersions, startCluster, startFromDataDir, chownToServerUser } from '../helpers/pg-cluster.ts';
import { requireBuiltCli, walshipBin } from '../helpers/cli.ts';

requireBuiltCli();

/** A config file the server's archive/restore commands read (archive_command runs in the server's environment). */
async function repositoryConfig(compression: string): Promise<{ repo: string; config: string }> {
  const dir = await makeServerOwnedDir('walship-repo-');
  const repo = join(dir, 'repo');
  const config = join(dir, 'walship.json');
  await mkdir(repo); // walship never creates the repository directory itself (an unmounted volume must not look empty)
  await writeFile(config, JSON.stringify({ storage: `file://${repo}`, compression }));
  await chownToServerUser(dir);
  await chmod(config, 0o644);
  return { repo, config };
}

const cases = pgVersions().map((major, i) => ({
  major,
  // Exercise every codec and a non-default wal_segment_size across the matrix.
  compression: ['zstd', 'lz4', 'none'][i % 3]!,
  walSegmentSizeMB: major === 17 ? 1 : major === 16 ? 64 : undefined,
}));

describe('PostgreSQL archives through walship and recovers to a restore point', { concurrency: 3 }, () => {
  for (const { major, compression, walSegmentSizeMB } of cases) {
    test(`PostgreSQL ${major}, ${compression}, ${walSegmentSizeMB ?? 16} MiB segments`, { timeout: 240_000 }, async () => {
      const { repo, config } = await repositoryConfig(compression);
      await using primary = await startCluster({
        major,
        ...(walSegmentSizeMB ? { walSegmentSizeMB } : {}),
        settings: { archive_mode: 'on', wal_level: 'replica', archive_command: `${walshipBin} --config ${config} wal-push %p`, archive_timeout: 0 },
      });
      await primary.sql('CREATE TABLE events (id int PRIMARY KEY, batch text NOT NULL, payload text)');
      await primary.sql("INSERT INTO events SELECT g, 'before-backup', repeat('x', 200) FROM generate_series(1, 1000) g");
      await primary.pgbench(['-i', '-s', '1', '-q']);
      await primary.sql('SELECT pg_switch_wal()');

      const copyDir = join(await makeServerOwnedDir(`walship-copy${major}-`), 'data');
      await basebackup(primary, copyDir, { wal: 'none' });

      await primary.sql("INSERT INTO events SELECT g, 'before-target', 'y' FROM generate_series(1001, 1500) g");
      await primary.pgbench(['-n', '-t', '200', '-c', '2']);
      await primary.sql("SELECT pg_create_restore_point('walship_target')");
      await primary.sql("INSERT INTO events SELECT g, 'after-target', 'z' FROM generate_series(1501, 1700) g");
      await primary.sql('DROP TABLE pgbench_history');
      const last = await primary.sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
      await primary.sql('SELECT pg_switch_wal()');
      await primary.waitFor(`SELECT last_archived_wal >= '${last}' FROM pg_stat_archiver`, 't', 60_000);

      // Every file the server marked archived is in the repository, and nothing failed.
      assert.equal(await primary.sql('SELECT failed_count FROM pg_stat_archiver'), '0');
      const done = (await readdir(join(primary.dataDir, 'pg_wal', 'archive_status'))).filter((f) => f.endsWith('.done')).map((f) => f.slice(0, -5));
      const stored = new Set(await readdir(join(repo, 'wal')));
      assert.ok(done.length > 0);
      for (const name of done) assert.ok(stored.has(name), `${name} archived by PostgreSQL but not in the repository`);
      assert.ok([...stored].some((n) => n.endsWith('.backup')) || major >= 16, 'a .backup history file is archived');

      const copy = await startFromDataDir(copyDir, major, {
        signal: 'recovery',
        wait: false,
        removeDataDir: true,
        settings: {
          archive_mode: 'off',
          restore_command: `${walshipBin} --config ${config} wal-fetch %f %p`,
          recovery_target_name: 'walship_target',
          recovery_target_action: 'promote',
        },
      });
      await using _copy = copy;
      assert.equal(await copy.waitForRecoveryEnd(180_000), 'promoted');
      assert.equal(await copy.sql("SELECT batch || ':' || count(*) FROM events GROUP BY batch ORDER BY batch"), 'before-backup:1000\nbefore-target:500');
      assert.equal(await copy.sql('SELECT count(*) > 0 FROM pgbench_history'), 't', 'pgbench_history exists at the target (dropped later)');
      assert.equal(await copy.sql('SELECT sum(abalance) = (SELECT sum(delta) FROM pgbench_history) FROM pgbench_accounts'), 't');
    });
  }
});
