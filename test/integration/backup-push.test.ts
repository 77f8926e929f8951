/**
 * backup-push and backup-fetch on a real PostgreSQL: what goes into a backup (DESIGN §4's
 * exclusions, unlogged relations, tablespaces), what the manifest records, data page checksum
 * verification against a deliberately corrupted page, the escape hatch (parts readable with
 * zstd + tar alone), names, and the refusal of a backup of another cluster.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdir, open, readdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { chownToServerUser, makeServerOwnedDir, startFromDataDir, type Cluster } from '../helpers/pg-cluster.ts';
import { FileStorage } from '../../src/storage/file.ts';
import { readManifest, type BackupManifest } from '../../src/backup/manifest.ts';
import { checkPage, isNewPage, pageChecksum, storedChecksum } from '../../src/pg/page-checksum.ts';
import { archivingCluster, makeRepository, pgEnv, restoreTarget, walship, walshipOk, type Repository } from './backup-support.ts';

const major = 16;

async function onlyBackup(repo: Repository): Promise<BackupManifest> {
  const list = JSON.parse((await walshipOk(['--config', repo.config, 'backup-list', '--json'])).stdout) as { name: string }[];
  assert.equal(list.length, 1);
  return readManifest(new FileStorage(repo.repo), list[0]!.name, undefined);
}

const relpath = async (cluster: Cluster, table: string) => cluster.sql(`SELECT pg_relation_filepath('${table}')`);

describe(`backup-push on PostgreSQL ${major}`, { concurrency: 2 }, () => {
  test('the manifest lists every file with its digest; excluded contents stay out, their directories stay in', { timeout: 120_000 }, async () => {
    const repo = await makeRepository({ compression: 'zstd', backupPartSize: '1MiB' });
    await using primary = await archivingCluster(major, repo);
    await primary.sql('CREATE TABLE kept (id int); INSERT INTO kept SELECT generate_series(1, 20000)');
    await primary.sql('CREATE UNLOGGED TABLE scratch (id int); INSERT INTO scratch SELECT generate_series(1, 20000)');
    await primary.sql('CHECKPOINT');
    const kept = await relpath(primary, 'kept');
    const scratch = await relpath(primary, 'scratch');
    // Junk where PostgreSQL keeps transient state: none of it may reach the backup.
    for (const junk of ['pg_replslot/junk', 'pg_dynshmem/junk', 'pg_notify/junk', 'pg_stat_tmp/junk', 'pg_snapshots/junk']) await writeFile(join(primary.dataDir, junk), 'x');
    await mkdir(join(primary.dataDir, 'base', 'pgsql_tmp'), { recursive: true });
    await writeFile(join(primary.dataDir, 'base', 'pgsql_tmp', 'pgsql_tmp1.0'), 'x');
    await writeFile(join(primary.dataDir, 'global', 'pg_internal.init'), 'x');
    await chownToServerUser(primary.dataDir);

    const pushed = await walshipOk(['--config', repo.config, 'backup-push', '--fast', '--permanent'], { env: pgEnv(primary) });
    const m = await onlyBackup(repo);
    const files = new Map(m.files.map((f) => [f.path, f]));
    assert.match(pushed.stderr, new RegExp(`backup ${m.name} complete: .* in ${m.parts.length} parts`));

    assert.equal(m.name, `base_${m.startWalFile}`);
    assert.equal(m.systemIdentifier, await primary.sql('SELECT system_identifier FROM pg_control_system()'));
    assert.equal(m.pgMajor, major);
    assert.equal(m.timeline, 1);
    assert.equal(m.walSegmentSize, 16 << 20);
    assert.equal(m.permanent, true);
    assert.equal(m.codec.compression, 'zstd');
    assert.ok(m.parts.length >= 3, `1 MiB parts: ${m.parts.length}`);
    assert.match(m.backupLabel, /^START WAL LOCATION: [0-9A-F]+\/[0-9A-F]+ \(file [0-9A-F]{24}\)\n/);
    assert.ok(m.backupLabel.includes(`(file ${m.startWalFile})`));
    assert.equal(m.tablespaceMap, '');
    // The stop segment was archived before the manifest was written.
    assert.ok((await readdir(join(repo.repo, 'wal'))).includes(m.stopWalFile));

    // Every file's digest is the file's content (PG_VERSION does not change under a running server).
    const version = await readFile(join(primary.dataDir, 'PG_VERSION'));
    assert.equal(files.get('PG_VERSION')?.sha256, createHash('sha256').update(version).digest('hex'));
    assert.equal(files.get('PG_VERSION')?.size, version.length);
    assert.equal(files.get('backup_label')?.sha256, createHash('sha256').update(m.backupLabel).digest('hex'));
    assert.ok(files.get(kept)?.size! > 0);
    assert.equal(files.get('global/pg_control')?.type, 'file');

    // Kept directories, emptied.
    for (const dir of ['pg_wal', 'pg_wal/archive_status', 'pg_replslot', 'pg_dynshmem', 'pg_notify', 'pg_stat_tmp', 'pg_snapshots', 'pg_subtrans', 'pg_serial']) {
      assert.equal(files.get(dir)?.type, 'dir', dir);
    }
    const inside = (dir: string) => m.files.filter((f) => f.path.startsWith(`${dir}/`) && f.type === 'file').map((f) => f.path);
    for (const dir of ['pg_wal', 'pg_replslot', 'pg_dynshmem', 'pg_notify', 'pg_stat_tmp', 'pg_snapshots', 'pg_subtrans']) assert.deepEqual(inside(dir), [], dir);
    for (const gone of ['postmaster.pid', 'postmaster.opts', 'global/pg_internal.init', 'base/pgsql_tmp', 'base/pgsql_tmp/pgsql_tmp1.0']) assert.ok(!files.has(gone), gone);
    // Unlogged: the init fork only.
    assert.ok(files.has(`${scratch}_init`));
    assert.ok(!files.has(scratch) && !files.has(`${scratch}_fsm`));

    // The summary backup-list reads is plain JSON without paths.
    const summary = JSON.parse(await readFile(join(repo.repo, 'backups', m.name, 'summary.json'), 'utf8'));
    assert.equal(summary.startLsn, m.startLsn);
    assert.ok(!JSON.stringify(summary).includes('base/'));

    // Escape hatch: zstd + tar alone give back the files.
    const hatch = await makeServerOwnedDir('walship-hatch-');
    for (const part of m.parts) {
      const tar = execFileSync('zstd', ['-dc', join(repo.repo, 'backups', m.name, 'parts', `${String(part.number).padStart(4, '0')}.tar`)], { maxBuffer: 1 << 30 });
      execFileSync('tar', ['-x', '-C', hatch], { input: tar });
    }
    assert.equal(createHash('sha256').update(await readFile(join(hatch, kept))).digest('hex'), files.get(kept)!.sha256);
    assert.equal(await readFile(join(hatch, 'backup_label'), 'utf8'), m.backupLabel);

    // backup-mark overrides the flag backup-push recorded; backup-list shows the mark.
    await walshipOk(['--config', repo.config, 'backup-mark', m.name, '--impermanent']);
    const marked = JSON.parse((await walshipOk(['--config', repo.config, 'backup-list', '--json'])).stdout) as { permanent: boolean }[];
    assert.equal(marked[0]!.permanent, false);

    // Same name twice: refused.
    const again = await walship(['--config', repo.config, 'backup-push', '--name', m.name], { env: pgEnv(primary) });
    assert.equal(again.code, 3, again.stderr);
    assert.match(again.stderr, /already exists/);
  });

  test('tablespaces are backed up and restored into a new location (--tablespace-map)', { timeout: 120_000 }, async () => {
    const repo = await makeRepository({ compression: 'lz4' });
    await using primary = await archivingCluster(major, repo);
    const location = await makeServerOwnedDir('walship-tblspc-');
    await primary.sql(`CREATE TABLESPACE extra LOCATION '${location}'`);
    await primary.sql("CREATE TABLE far (id int, v text) TABLESPACE extra; INSERT INTO far SELECT g, 'v' || g FROM generate_series(1, 5000) g");
    const oid = await primary.sql("SELECT oid FROM pg_tablespace WHERE spcname = 'extra'");
    await walshipOk(['--config', repo.config, 'backup-push', '--fast', '--name', 'with_tablespace'], { env: pgEnv(primary) });
    const m = await onlyBackup(repo);
    assert.equal(m.name, 'with_tablespace');
    // lz4 parts carry no content checksum (FLG bit 2, after the magic): the manifest's SHA-256s cover their files.
    const firstPart = await readFile(join(repo.repo, 'backups', m.name, 'parts', '0001.tar'));
    assert.equal(firstPart.readUInt32LE(0), 0x184d2204, 'an lz4 frame');
    assert.equal(firstPart[4]! & 0x04, 0, 'no content checksum');
    assert.deepEqual(m.tablespaces, [{ oid, location }]);
    assert.match(m.tablespaceMap, new RegExp(`^${oid} ${location}\n`));
    assert.ok(m.files.some((f) => f.path.startsWith(`pg_tblspc/${oid}/PG_${major}_`) && f.type === 'file'));

    // The original location is still in use: restore elsewhere.
    const target = await restoreTarget();
    const moved = join(await makeServerOwnedDir('walship-tblspc-new-'), 'moved');
    const busy = await walship(['--config', repo.config, 'restore', target, '--immediate', '--target-action', 'promote']);
    assert.equal(busy.code, 3, busy.stderr);
    assert.match(busy.stderr, /tablespace \d+ location .* is not empty/);
    assert.deepEqual(await readdir(target), [], 'nothing left after a refused restore');
    await walshipOk(['--config', repo.config, 'restore', target, '--immediate', '--target-action', 'promote', '--tablespace-map', `${location}=${moved}`]);
    assert.equal(await readlink(join(target, 'pg_tblspc', oid)), moved);
    assert.match(await readFile(join(target, 'tablespace_map'), 'utf8'), new RegExp(`^${oid} ${moved}\n`));
    await using copy = await startFromDataDir(target, major, { wait: false, removeDataDir: true, settings: { archive_mode: 'off' } });
    assert.equal(await copy.waitForRecoveryEnd(), 'promoted');
    assert.equal(await copy.sql('SELECT count(*) FROM far'), '5000');
    assert.equal(await copy.sql("SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'extra'"), moved);
  });

  test('--verify-checksums: walship computes PostgreSQL page checksums and records a corrupted page', { timeout: 120_000 }, async () => {
    const repo = await makeRepository();
    await using primary = await archivingCluster(major, repo, { dataChecksums: true });
    assert.equal(await primary.sql('SHOW data_checksums'), 'on');
    await primary.sql("CREATE TABLE victim (id int, v text); INSERT INTO victim SELECT g, repeat('v', 100) FROM generate_series(1, 2000) g");
    await primary.sql('CREATE TABLE healthy (id int); INSERT INTO healthy SELECT generate_series(1, 50000)');
    await primary.sql('CHECKPOINT');
    const victim = await relpath(primary, 'victim');
    const healthy = await relpath(primary, 'healthy');

    // pageChecksum agrees with the server on every page it wrote.
    const pages = await readFile(join(primary.dataDir, healthy));
    let checked = 0;
    for (let block = 0; block * 8192 < pages.length; block++) {
      const page = pages.subarray(block * 8192, (block + 1) * 8192);
      if (isNewPage(page)) continue;
      assert.equal(pageChecksum(page, block), storedChecksum(page), `block ${block}`);
      assert.ok(checkPage(page, block).ok);
      checked++;
    }
    assert.ok(checked > 100);

    // Corrupt block 1 of victim on disk while the server is down (its buffers cannot overwrite it).
    await primary.stop();
    const handle = await open(join(primary.dataDir, victim), 'r+');
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, 8192 + 4000);
    byte[0]! ^= 0x10;
    await handle.write(byte, 0, 1, 8192 + 4000);
    await handle.close();
    await primary.start();

    const pushed = await walshipOk(['--config', repo.config, 'backup-push', '--fast', '--verify-checksums'], { env: pgEnv(primary) });
    assert.match(pushed.stderr, /data page checksum failure .*block=1/);
    const m = await onlyBackup(repo);
    assert.equal(m.verifyChecksums, true);
    assert.equal(m.checksumFailures.length, 1, JSON.stringify(m.checksumFailures));
    assert.equal(m.checksumFailures[0]!.path, victim);
    assert.equal(m.checksumFailures[0]!.block, 1);
    assert.match((await walshipOk(['--config', repo.config, 'backup-list', '--json'])).stdout, /"checksumFailures": 1/);
  });

  test('encrypted repository: parts and manifest are age-encrypted, backup-list works with the recipient only, restore with the identity', { timeout: 120_000 }, async () => {
    const keys = await makeServerOwnedDir('walship-keys-');
    const identity = join(keys, 'key.txt');
    const recipient = (await walshipOk(['keygen', '-o', identity])).stdout.trim();
    assert.match(recipient, /^age1[0-9a-z]+$/);
    const repo = await makeRepository({ recipients: recipient, identityFile: identity });
    await using primary = await archivingCluster(major, repo);
    await primary.sql('CREATE TABLE secret AS SELECT generate_series(1, 4242) AS id');
    await walshipOk(['--config', repo.config, 'backup-push', '--fast'], { env: pgEnv(primary) });
    const [name] = await readdir(join(repo.repo, 'backups'));
    const age = Buffer.from('age-encryption.org/v1\n');
    assert.deepEqual((await readFile(join(repo.repo, 'backups', name!, 'manifest.json'))).subarray(0, age.length), age);
    assert.deepEqual((await readFile(join(repo.repo, 'backups', name!, 'parts', '0001.tar'))).subarray(0, age.length), age);

    // The database host holds only the recipient: listing still works (summary.json), reading the manifest does not.
    const pushOnly = join(keys, 'push-only.json');
    await writeFile(pushOnly, JSON.stringify({ storage: `file://${repo.repo}`, recipients: recipient }));
    await chownToServerUser(keys);
    const listed = JSON.parse((await walshipOk(['--config', pushOnly, 'backup-list', '--json'])).stdout) as { name: string; encrypted: boolean }[];
    assert.deepEqual(listed.map((b) => [b.name, b.encrypted]), [[name, true]]);
    const noKey = await walship(['--config', pushOnly, 'backup-fetch', 'LATEST', await restoreTarget()]);
    assert.equal(noKey.code, 4, noKey.stderr);
    assert.match(noKey.stderr, /object is encrypted; set WALSHIP_IDENTITY_FILE/);

    // Escape hatch: age + zstd + tar.
    const tar = execFileSync('sh', ['-c', `age -d -i ${identity} ${join(repo.repo, 'backups', name!, 'parts', '0001.tar')} | zstd -dc | tar -t`], { encoding: 'utf8', maxBuffer: 1 << 26 });
    assert.match(tar, /^PG_VERSION$/m);

    const target = await restoreTarget();
    await walshipOk(['--config', repo.config, 'restore', target, '--immediate', '--target-action', 'promote']);
    await using copy = await startFromDataDir(target, major, { wait: false, removeDataDir: true, settings: { archive_mode: 'off' } });
    assert.equal(await copy.waitForRecoveryEnd(), 'promoted');
    assert.equal(await copy.sql('SELECT count(*) FROM secret'), '4242');
  });

  test('libpq conventions: password from PGPASSFILE over TCP (scram); none or a wrong one is a clear exit 6 without the secret', { timeout: 120_000 }, async () => {
    const repo = await makeRepository();
    await using primary = await archivingCluster(major, repo);
    await primary.sql("SET password_encryption = 'scram-sha-256'; CREATE ROLE backup_user LOGIN SUPERUSER PASSWORD 's3cret:pw'");
    const hba = join(primary.dataDir, 'pg_hba.conf');
    await writeFile(hba, `host all backup_user 127.0.0.1/32 scram-sha-256\n${await readFile(hba, 'utf8')}`);
    await primary.sql('SELECT pg_reload_conf()');
    const dir = await makeServerOwnedDir('walship-pgpass-');
    const passfile = join(dir, 'pgpass');
    await writeFile(passfile, `127.0.0.1:${primary.port}:postgres:backup_user:s3cret\\:pw\n`, { mode: 0o600 });
    await chownToServerUser(dir);
    const env = { PGHOST: '127.0.0.1', PGPORT: String(primary.port), PGUSER: 'backup_user', PGDATABASE: 'postgres', PGDATA: primary.dataDir };

    const none = await walship(['--config', repo.config, 'backup-push', '--fast'], { env: { ...env, PGPASSFILE: join(dir, 'absent') } });
    assert.equal(none.code, 6, none.stderr);
    assert.match(none.stderr, /cannot connect to PostgreSQL \(127\.0\.0\.1:\d+ as backup_user, database postgres\): the server asks for a password and none was supplied/);
    const wrong = await walship(['--config', repo.config, 'backup-push', '--fast'], { env: { ...env, PGPASSWORD: 'not-the-password' } });
    assert.equal(wrong.code, 6, wrong.stderr);
    assert.match(wrong.stderr, /password authentication failed for user "backup_user"/);
    assert.ok(!wrong.stderr.includes('not-the-password'));

    await walshipOk(['--config', repo.config, 'backup-push', '--fast'], { env: { ...env, PGPASSFILE: passfile } });
    assert.equal(JSON.parse((await walshipOk(['--config', repo.config, 'backup-list', '--json'])).stdout).length, 1);
  });

  test('a backup of another cluster (system identifier) is refused by backup-fetch and restore', { timeout: 120_000 }, async () => {
    const repoA = await makeRepository();
    const repoB = await makeRepository();
    await using a = await archivingCluster(major, repoA);
    await using b = await archivingCluster(major, repoB);
    await walshipOk(['--config', repoA.config, 'backup-push', '--fast'], { env: pgEnv(a) });
    await b.sql('SELECT pg_switch_wal()');
    await b.waitFor('SELECT archived_count > 0 FROM pg_stat_archiver', 't');
    // Copy A's backup into B's repository, as a mix-up of prefixes would.
    const name = (await readdir(join(repoA.repo, 'backups')))[0]!;
    await cp(join(repoA.repo, 'backups', name), join(repoB.repo, 'backups', name), { recursive: true });
    await chownToServerUser(repoB.repo);
    const target = await restoreTarget();
    for (const args of [['backup-fetch', name, target], ['restore', target, '--immediate']]) {
      const r = await walship(['--config', repoB.config, ...args]);
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /backup base_\w+ is of database system \d+, but (the )?repository .*belongs to \d+; refusing/);
      assert.deepEqual(await readdir(target), []);
    }
    assert.ok((await stat(target)).isDirectory());
  });
});
