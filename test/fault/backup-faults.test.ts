/**
 * Base backups under failure, on a real PostgreSQL: backup-push killed with SIGKILL in the middle
 * of its uploads (the half backup never shows, the next one succeeds and restores), archiving
 * broken (a clear error after the archive timeout, no backup), and damaged parts of a real backup
 * (a flipped bit: exit 4 with nothing startable left; a missing part: a clear error).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { makeServerOwnedDir, serverUser, startFromDataDir } from '../helpers/pg-cluster.ts';
import { archivingCluster, cli, makeRepository, pgEnv, restoreTarget, walship, walshipOk } from '../integration/backup-support.ts';

const major = 15;

describe(`backup faults on PostgreSQL ${major}`, { concurrency: 2 }, () => {
  test('kill -9 of backup-push midway: the half backup is not listed, a new backup-push succeeds and restores', { timeout: 180_000 }, async () => {
    const repo = await makeRepository({ compression: 'none', backupPartSize: '1MiB', uploadConcurrency: 1 });
    await using primary = await archivingCluster(major, repo);
    await primary.pgbench(['-i', '-s', '4', '-q']);

    const user = serverUser();
    const child = spawn(cli, ['--config', repo.config, 'backup-push', '--fast'], {
      uid: user.uid,
      gid: user.gid,
      cwd: '/',
      env: { PATH: '/usr/bin:/bin', HOME: user.home, ...pgEnv(primary) },
      stdio: 'ignore',
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    // Kill it once a few parts are stored: in the middle of streaming the data directory.
    const backups = join(repo.repo, 'backups');
    const deadline = Date.now() + 60_000;
    for (;;) {
      const names = await readdir(backups).catch(() => []);
      const parts = names.length ? await readdir(join(backups, names[0]!, 'parts')).catch(() => []) : [];
      if (parts.length >= 3) break;
      assert.ok(Date.now() < deadline, 'backup-push never stored 3 parts');
      await sleep(10);
    }
    child.kill('SIGKILL');
    assert.equal(await exited, 'SIGKILL');
    const [half] = await readdir(backups);
    assert.ok(!existsSync(join(backups, half!, 'manifest.json')));

    const list = await walshipOk(['--config', repo.config, 'backup-list']);
    assert.equal(list.stdout, 'no complete backups\n');
    assert.deepEqual(JSON.parse((await walshipOk(['--config', repo.config, 'backup-list', '--json'])).stdout), []);
    // The server ended the aborted backup with the session.
    await primary.waitFor("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'walship backup-push'", '0');

    await primary.sql('CREATE TABLE after_kill AS SELECT generate_series(1, 777) AS id');
    const again = await walshipOk(['--config', repo.config, 'backup-push', '--fast'], { env: pgEnv(primary) });
    const listed = JSON.parse((await walshipOk(['--config', repo.config, 'backup-list', '--json'])).stdout) as { name: string }[];
    assert.equal(listed.length, 1);
    if (listed[0]!.name === half) assert.match(again.stderr, /removing the objects of an interrupted backup with the same name/);

    const target = await restoreTarget();
    await walshipOk(['--config', repo.config, 'restore', target, '--immediate', '--target-action', 'promote']);
    await using copy = await startFromDataDir(target, major, { wait: false, removeDataDir: true, settings: { archive_mode: 'off' } });
    assert.equal(await copy.waitForRecoveryEnd(), 'promoted');
    assert.equal(await copy.sql('SELECT count(*) FROM after_kill'), '777');
    assert.equal(await copy.sql('SELECT count(*) FROM pgbench_accounts'), '400000');
  });

  test('archiving broken: backup-push fails after the archive timeout, naming the segment; nothing is listed; a second concurrent backup-push is refused', { timeout: 120_000 }, async () => {
    const repo = await makeRepository();
    const flag = join(await makeServerOwnedDir('walship-flag-'), 'archiving-broken');
    await writeFile(flag, '');
    await using primary = await archivingCluster(major, repo, {
      settings: { archive_command: `test ! -f ${flag} && ${cli} --config ${repo.config} wal-push %p` },
    });
    const pushing = walship(['--config', repo.config, 'backup-push', '--fast'], { env: { ...pgEnv(primary), WALSHIP_ARCHIVE_TIMEOUT: '4' } });
    // While it runs, a second backup-push of the same cluster is refused.
    await primary.waitFor("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted", '1');
    const second = await walship(['--config', repo.config, 'backup-push', '--fast'], { env: pgEnv(primary) });
    assert.equal(second.code, 3, second.stderr);
    assert.match(second.stderr, /another walship backup-push is running against this cluster/);
    const failed = await pushing;
    assert.equal(failed.code, 6, failed.stderr);
    assert.match(failed.stderr, /the backup's stop segment [0-9A-F]{24} did not reach file:\/\/\S+ within 4 s: is archive_command = 'walship wal-push %p' working; the archiver's last failure was [0-9A-F]{24}/);
    assert.equal((await walshipOk(['--config', repo.config, 'backup-list'])).stdout, 'no complete backups\n');

    await rm(flag);
    await walshipOk(['--config', repo.config, 'backup-push', '--fast'], { env: pgEnv(primary) });
    assert.equal(JSON.parse((await walshipOk(['--config', repo.config, 'backup-list', '--json'])).stdout).length, 1);
  });

  test('a flipped bit in a part of a real backup: exit 4, nothing startable left; a missing part: a clear error', { timeout: 120_000 }, async () => {
    const repo = await makeRepository({ compression: 'none', backupPartSize: '2MiB' });
    await using primary = await archivingCluster(major, repo);
    await primary.sql("CREATE TABLE precious AS SELECT g AS id, repeat('p', 100) AS v FROM generate_series(1, 30000) g");
    await primary.sql('CHECKPOINT');
    const file = await primary.sql("SELECT pg_relation_filepath('precious')");
    await walshipOk(['--config', repo.config, 'backup-push', '--fast'], { env: pgEnv(primary) });
    const [name] = await readdir(join(repo.repo, 'backups'));
    const partsDir = join(repo.repo, 'backups', name!, 'parts');
    const parts = (await readdir(partsDir)).sort();
    assert.ok(parts.length >= 2);

    // Flip one bit inside the table's data, wherever its tar entry landed.
    let flipped: string | undefined;
    for (const part of parts) {
      const bytes = await readFile(join(partsDir, part));
      const header = bytes.indexOf(Buffer.from(`${file}\0`));
      if (header < 0 || header % 512 !== 0) continue;
      const saved = Buffer.from(bytes);
      bytes[header + 512 + 5000]! ^= 0x20;
      await writeFile(join(partsDir, part), bytes);
      flipped = part;

      const target = await restoreTarget();
      const r = await walship(['--config', repo.config, 'restore', target, '--immediate']);
      assert.equal(r.code, 4, r.stderr);
      assert.match(r.stderr, new RegExp(`${file} \\(part \\d+\\) does not match its SHA-256 in the manifest; the backup is corrupt`));
      assert.deepEqual(await readdir(target), [], 'nothing left: no pg_control, no half cluster to start');
      await writeFile(join(partsDir, part), saved);
      break;
    }
    assert.ok(flipped, `${file} not found at a tar header boundary in any part`);

    await rm(join(partsDir, parts[1]!));
    const target = await restoreTarget();
    const r = await walship(['--config', repo.config, 'backup-fetch', name!, target]);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, new RegExp(`backup ${name} is damaged: part 2 \\(backups/${name}/parts/0002\\.tar\\) is missing from file://`));
    assert.deepEqual(await readdir(target), []);
  });
});
