/**
 * Retention and verification against a cloud backend (S3 through s3rver), on real PostgreSQL 15:
 * backup-mark pins and unpins through a small object, `delete retain 1` honours it, a dry run
 * changes nothing, and after the real deletion wal-verify passes and the kept backup restores to a
 * time inside its range.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startFromDataDir } from '../helpers/pg-cluster.ts';
import { startS3rver, type Emulator } from '../helpers/emulators.ts';
import { archivingCluster, makeRepository, pgEnv, restoreTarget, walship, walshipOk } from './backup-support.ts';

let s3: Emulator;
before(async () => {
  s3 = await startS3rver();
});
after(async () => {
  await s3?.stop();
});

test('delete retain, backup-mark and wal-verify on S3 (s3rver) with PostgreSQL 15', { timeout: 300_000 }, async () => {
  const repo = await makeRepository({ storage: s3.urlFor({ prefix: 'lifecycle' }), compression: 'lz4', backupPartSize: '4MiB' });
  const env = s3.env;
  const run = (args: string[], extra: Record<string, string> = {}) => walshipOk(['--config', repo.config, ...args], { env: { ...env, ...extra } });
  await using primary = await archivingCluster(15, repo, { walSegmentSizeMB: 1, env });
  const switchAndWait = async () => {
    const last = await primary.sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
    await primary.sql('SELECT pg_switch_wal()');
    await primary.waitFor(`SELECT last_archived_wal >= '${last}' FROM pg_stat_archiver`, 't', 60_000);
  };
  await primary.sql('CREATE TABLE ev (id serial PRIMARY KEY, batch text NOT NULL, pad text)');
  await primary.sql("INSERT INTO ev (batch, pad) SELECT 'p0', repeat('x', 400) FROM generate_series(1, 3000)");
  await run(['backup-push', '--fast'], pgEnv(primary));
  await primary.sql("INSERT INTO ev (batch, pad) SELECT 'a', repeat('y', 400) FROM generate_series(1, 3000)");
  await switchAndWait();
  await run(['backup-push', '--fast'], pgEnv(primary));
  await primary.sql("INSERT INTO ev (batch) VALUES ('b')");
  const tb = await primary.sql('SELECT clock_timestamp()::text');
  await primary.sql("INSERT INTO ev (batch) VALUES ('late')");
  await switchAndWait();
  await primary.stop('fast');

  const backups = JSON.parse((await run(['backup-list', '--json'])).stdout) as { name: string }[];
  assert.equal(backups.length, 2);
  const [older, newer] = backups.map((b) => b.name) as [string, string];
  const objects = async () => JSON.parse((await run(['status', '--json', '--no-cluster'])).stdout).repository.objects as number;

  // Pinned: retain 1 keeps both.
  await run(['backup-mark', older]);
  assert.match((await run(['delete', 'retain', '1', '--confirm'])).stdout, new RegExp(`keep +${older}.*permanent`));
  assert.equal((JSON.parse((await run(['backup-list', '--json'])).stdout) as unknown[]).length, 2);

  // Unpinned: a dry run changes nothing, the real run deletes the older backup and its WAL.
  await run(['backup-mark', older, '--impermanent']);
  const count = await objects();
  const dry = JSON.parse((await run(['delete', 'retain', '1', '--json'])).stdout) as { dryRun: boolean; delete: { name: string }[]; wal: { delete: string[] } };
  assert.equal(dry.dryRun, true);
  assert.deepEqual(dry.delete.map((d) => d.name), [older]);
  assert.ok(dry.wal.delete.length > 0);
  assert.equal(await objects(), count, 'dry run deletes nothing');
  await run(['delete', 'retain', '1', '--confirm']);
  assert.deepEqual((JSON.parse((await run(['backup-list', '--json'])).stdout) as { name: string }[]).map((b) => b.name), [newer]);
  const remaining = await objects();
  assert.ok(remaining < count - dry.wal.delete.length, `${remaining} objects left of ${count}`);
  const shown = JSON.parse((await run(['wal-show', '--json'])).stdout) as { timelines: { first: string }[] };
  assert.ok(dry.wal.delete.every((name) => name < shown.timelines[0]!.first || name.endsWith('.backup')));

  const verified = await walship(['--config', repo.config, 'wal-verify'], { env });
  assert.equal(verified.code, 0, verified.stdout + verified.stderr);

  // The kept backup restores to a time inside its range.
  const target = await restoreTarget('walship-life-s3-');
  await run(['restore', target, '--target-time', tb, '--target-action', 'promote']);
  await using copy = await startFromDataDir(target, 15, { wait: false, removeDataDir: true, settings: { archive_mode: 'off' }, env });
  assert.equal(await copy.waitForRecoveryEnd(120_000), 'promoted');
  assert.equal(await copy.sql('SELECT string_agg(batch, \',\' ORDER BY first) FROM (SELECT batch, min(id) AS first FROM ev GROUP BY batch) s'), 'p0,a,b');
});
