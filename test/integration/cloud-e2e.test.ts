/**
 * End to end against each cloud emulator (issue 6, item 8): S3 through s3rver, Azure Blob through
 * azurite, GCS through the in-repo JSON-API server. For each, a real PostgreSQL 15 cluster (1 MiB
 * segments) archives through `bin/walship --config <cfg> wal-push %p`, with the SDK credentials in
 * the server's environment (as an operator would set them for archive_command); then, as the
 * postgres user: backup-push --fast, rows, a restore point, more rows, WAL switched and archived;
 * wal-fetch of an archived segment gives its exact bytes, of a missing one exits 1, from a
 * missing bucket exits 5 (a storage failure must never read as "not found"); pushing
 * an archived segment again exits 0 and different bytes under its name exit 3 (on s3rver, which
 * ignores If-None-Match, through the conditionalWrites=false fallback);
 * backup-list and backup-fetch LATEST work; `restore --target-name ... --target-action promote`
 * brings a copy back that replays through wal-fetch to the restore point and no further.
 *
 * The three backends run concurrently (each has its own emulator, cluster and repository).
 */
import assert from 'node:assert/strict';
import { chmod, copyFile, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { startAzurite, startGcsServer, startS3rver, type Emulator } from '../helpers/emulators.ts';
import { chownToServerUser, makeServerOwnedDir, startFromDataDir } from '../helpers/pg-cluster.ts';
import { archivingCluster, pgEnv, restoreTarget, walship, walshipOk, type Repository } from './backup-support.ts';

const backends: { name: string; start: () => Promise<Emulator> }[] = [
  { name: 'S3 (s3rver)', start: startS3rver },
  { name: 'Azure Blob (azurite)', start: startAzurite },
  { name: 'GCS (test server)', start: startGcsServer },
];

/** A config file holding only the storage URL, readable by the postgres user (no secrets in it). */
async function cloudRepository(storage: string): Promise<Repository> {
  const dir = await makeServerOwnedDir('walship-cloud-');
  const config = join(dir, 'walship.json');
  await writeFile(config, JSON.stringify({ storage, compression: 'zstd', backupPartSize: '8MiB' }));
  await chownToServerUser(dir);
  await chmod(config, 0o644);
  return { dir, repo: storage, config };
}

describe('cloud backends end to end with PostgreSQL 15', { concurrency: backends.length }, () => {
  for (const backend of backends) {
    test(`${backend.name}: archive, backup-push, wal-fetch, backup-fetch, restore to a restore point`, { timeout: 180_000 }, async () => {
      const emulator = await backend.start();
      try {
        const env = emulator.env;
        const repo = await cloudRepository(emulator.urlFor({ prefix: 'e2e/main' }));
        const run = (args: string[], extra: Record<string, string> = {}) => walshipOk(['--config', repo.config, ...args], { env: { ...env, ...extra } });

        await using primary = await archivingCluster(15, repo, { walSegmentSizeMB: 1, env });
        const switchAndWait = async () => {
          const last = await primary.sql('SELECT pg_walfile_name(pg_switch_wal())');
          await primary.waitFor(`SELECT last_archived_wal >= '${last}' FROM pg_stat_archiver`, 't', 60_000);
          return last;
        };
        await primary.sql('CREATE TABLE ev (id serial PRIMARY KEY, batch text NOT NULL, pad text)');
        await primary.sql("INSERT INTO ev (batch, pad) SELECT 'base', repeat('x', 300) FROM generate_series(1, 2000)");

        await run(['backup-push', '--fast'], pgEnv(primary));
        await primary.sql("INSERT INTO ev (batch, pad) SELECT 'before', repeat('y', 300) FROM generate_series(1, 3000)");
        await primary.sql("SELECT pg_create_restore_point('cloud_e2e_target')");
        await primary.sql("INSERT INTO ev (batch, pad) SELECT 'after', repeat('z', 300) FROM generate_series(1, 1500)");
        const lastSegment = await switchAndWait();
        assert.equal(await primary.sql('SELECT failed_count FROM pg_stat_archiver'), '0', 'no archive_command failure');
        const archivedCount = Number(await primary.sql('SELECT archived_count FROM pg_stat_archiver'));
        assert.ok(archivedCount >= 4, `archived ${archivedCount} WAL files`);

        // wal-fetch: exact bytes of a segment still in pg_wal; exit 1 for one never written.
        const fetchDir = await makeServerOwnedDir('walship-cloud-fetch-');
        const dest = join(fetchDir, 'RECOVERYXLOG');
        await run(['wal-fetch', lastSegment, dest]);
        assert.ok((await readFile(dest)).equals(await readFile(join(primary.dataDir, 'pg_wal', lastSegment))), `wal-fetch ${lastSegment}: same bytes`);
        const missing = await walship(['--config', repo.config, 'wal-fetch', '0000000100000000000000FF', join(fetchDir, 'nothing')], { env });
        assert.equal(missing.code, 1, `wal-fetch of a missing segment: ${missing.stderr}`);
        const missingHistory = await walship(['--config', repo.config, 'wal-fetch', '00000002.history', join(fetchDir, 'nothing')], { env });
        assert.equal(missingHistory.code, 1, `wal-fetch of a missing .history: ${missingHistory.stderr}`);

        // A missing bucket/container is a storage failure (exit 5), never "not found" (exit 1),
        // which would end recovery early and fork a timeline.
        const wrongBucket = emulator.urlFor({ prefix: 'e2e/main' }).replace(`://${emulator.bucket}/`, '://no-such-bucket/');
        const noBucket = await walship(['--config', repo.config, 'wal-fetch', lastSegment, join(fetchDir, 'nothing')], { env: { ...env, WALSHIP_STORAGE: wrongBucket } });
        assert.equal(noBucket.code, 5, `wal-fetch from a missing bucket: ${noBucket.stderr}`);
        assert.match(noBucket.stderr, /no-such-bucket/);

        // archive_command may run again for a segment already archived (a crash before .done):
        // same bytes exit 0; different bytes under the name are refused (exit 3). s3rver ignores
        // If-None-Match, so on S3 that is checked through the documented head-then-put fallback
        // (conditionalWrites=false); the conditional PUT itself is covered by test/fault.
        const again = join(fetchDir, lastSegment);
        await copyFile(dest, again);
        await chownToServerUser(fetchDir);
        await run(['wal-push', again]);
        const bytes = await readFile(again);
        bytes[bytes.length - 1]! ^= 0xff;
        await writeFile(again, bytes);
        const conflictConfig = backend.name.startsWith('S3')
          ? (await cloudRepository(emulator.urlFor({ prefix: 'e2e/main', extra: { conditionalWrites: 'false' } }))).config
          : repo.config;
        const conflict = await walship(['--config', conflictConfig, 'wal-push', again], { env });
        assert.equal(conflict.code, 3, `wal-push of different bytes under an archived name: ${conflict.stderr}`);
        const kept = join(fetchDir, 'kept');
        await run(['wal-fetch', lastSegment, kept]);
        assert.ok((await readFile(kept)).equals(await readFile(dest)), 'the archived segment is unchanged');

        await primary.stop('fast');

        const backups = JSON.parse((await run(['backup-list', '--json'])).stdout) as { name: string }[];
        assert.equal(backups.length, 1);

        // backup-fetch LATEST lays the backup out (every checksum verified).
        const fetched = await restoreTarget('walship-cloud-bf-');
        await run(['backup-fetch', 'LATEST', fetched]);
        assert.equal((await readFile(join(fetched, 'PG_VERSION'), 'utf8')).trim(), '15');
        assert.ok((await readdir(join(fetched, 'global'))).includes('pg_control'));
        assert.match(await readFile(join(fetched, 'backup_label'), 'utf8'), /START WAL LOCATION/);

        // restore to the restore point; recovery fetches every segment through wal-fetch.
        const target = await restoreTarget('walship-cloud-rs-');
        await run(['restore', target, '--target-name', 'cloud_e2e_target', '--target-action', 'promote']);
        assert.match(await readFile(join(target, 'postgresql.auto.conf'), 'utf8'), /restore_command = '.*wal-fetch %f %p'/);
        await using copy = await startFromDataDir(target, 15, { wait: false, removeDataDir: true, settings: { archive_mode: 'off' }, env });
        assert.equal(await copy.waitForRecoveryEnd(90_000), 'promoted');
        assert.equal(
          await copy.sql("SELECT string_agg(batch || '=' || n, ',' ORDER BY batch) FROM (SELECT batch, count(*) AS n FROM ev GROUP BY batch) s"),
          'base=2000,before=3000',
        );
        assert.match(copy.log(), /restored log file "[0-9A-F]{24}" from archive/);
        assert.match(copy.log(), /recovery stopping at restore point "cloud_e2e_target"/);
      } finally {
        await emulator.stop();
      }
    });
  }
});
