/**
 * Encryption end to end on real PostgreSQL 15: the server archives through `walship wal-push %p`
 * with a config holding only the public recipient (the database host's view), every archived
 * object is age-encrypted, and a copy recovers to a restore point through `walship wal-fetch`
 * with a second config that holds the identity file (the restore host's view), owned by the
 * server user with mode 0600, so no permission warning appears in the server log.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { basebackup, chownToServerUser, makeServerOwnedDir, startCluster, startFromDataDir } from '../helpers/pg-cluster.ts';
import { requireBuiltCli, runWalship, walshipBin } from '../helpers/cli.ts';

requireBuiltCli();

test('PostgreSQL 15 archives encrypted WAL with only the recipient and recovers with the identity', { timeout: 240_000 }, async () => {
  const dir = await makeServerOwnedDir('walship-enc-');
  const repo = join(dir, 'repo');
  const keyFile = join(dir, 'key.txt');
  await writeFile(join(dir, 'none.json'), '{}');
  const keygen = await runWalship(['keygen', '-o', keyFile], { env: { WALSHIP_CONFIG: join(dir, 'none.json') } });
  assert.equal(keygen.code, 0, keygen.stderr);
  const recipient = keygen.stdout.trim();
  const pushConfig = join(dir, 'push.json');
  const fetchConfig = join(dir, 'fetch.json');
  await writeFile(pushConfig, JSON.stringify({ storage: `file://${repo}`, recipients: [recipient] }));
  await writeFile(fetchConfig, JSON.stringify({ storage: `file://${repo}`, identityFile: keyFile }));
  await mkdir(repo);
  await chownToServerUser(dir);
  await chmod(pushConfig, 0o644);
  await chmod(fetchConfig, 0o644);
  await chmod(keyFile, 0o600);

  await using primary = await startCluster({
    major: 15,
    settings: { archive_mode: 'on', wal_level: 'replica', archive_command: `${walshipBin} --config ${pushConfig} wal-push %p`, archive_timeout: 0 },
  });
  await primary.sql('CREATE TABLE t (id int PRIMARY KEY, note text)');
  await primary.sql("INSERT INTO t SELECT g, 'before' FROM generate_series(1, 500) g");
  await primary.sql('SELECT pg_switch_wal()');
  const copyDir = join(await makeServerOwnedDir('walship-enc-copy-'), 'data');
  await basebackup(primary, copyDir, { wal: 'none' });
  await primary.sql("INSERT INTO t SELECT g, 'target' FROM generate_series(501, 800) g");
  await primary.sql("SELECT pg_create_restore_point('enc_target')");
  await primary.sql("INSERT INTO t SELECT g, 'after' FROM generate_series(801, 900) g");
  const last = await primary.sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
  await primary.sql('SELECT pg_switch_wal()');
  await primary.waitFor(`SELECT last_archived_wal >= '${last}' FROM pg_stat_archiver`, 't', 60_000);
  assert.equal(await primary.sql('SELECT failed_count FROM pg_stat_archiver'), '0');

  // Every archived object is encrypted; walship.json names the recipient by fingerprint only.
  const names = await readdir(join(repo, 'wal'));
  assert.ok(names.length >= 3, names.join(' '));
  for (const name of names) {
    const head = (await readFile(join(repo, 'wal', name))).subarray(0, 22).toString('latin1');
    assert.equal(head, 'age-encryption.org/v1\n', `${name} is not age-encrypted`);
  }
  const info = JSON.parse(await readFile(join(repo, 'walship.json'), 'utf8'));
  assert.equal(info.encryption.recipients.length, 1);
  assert.doesNotMatch(JSON.stringify(info), /age1|AGE-SECRET/i);

  await using copy = await startFromDataDir(copyDir, 15, {
    signal: 'recovery',
    wait: false,
    removeDataDir: true,
    settings: {
      archive_mode: 'off',
      restore_command: `${walshipBin} --config ${fetchConfig} wal-fetch %f %p`,
      recovery_target_name: 'enc_target',
      recovery_target_action: 'promote',
    },
  });
  assert.equal(await copy.waitForRecoveryEnd(180_000), 'promoted');
  assert.equal(await copy.sql("SELECT note || ':' || count(*) FROM t GROUP BY note ORDER BY note"), 'before:500\ntarget:300');
  // walship's lines reach the server logs: no warning or error from it on either side, no key material.
  for (const log of [primary.log(), copy.log()]) {
    assert.doesNotMatch(log, /walship [\w-]+: (warn|error):/, log);
    assert.doesNotMatch(log, /AGE-SECRET-KEY/i);
  }
  assert.match(copy.log(), /restored log file "[0-9A-F]{24}" from archive/);
});
