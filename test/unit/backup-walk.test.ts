import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { skippedRelationFiles } from '../../src/backup/exclusions.ts';
import { checkManifest, unsafePath, validBackupName, type BackupManifest } from '../../src/backup/manifest.ts';
import { walkDataDirectory } from '../../src/backup/walk.ts';

const root = await mkdtemp(join(tmpdir(), 'walship-walk-'));
after(() => rm(root, { recursive: true, force: true }));

async function tree(base: string, files: Record<string, string | null>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    const full = join(base, path);
    if (content === null) await mkdir(full, { recursive: true });
    else {
      await mkdir(join(full, '..'), { recursive: true });
      await writeFile(full, content);
    }
  }
}

test('the walk applies DESIGN §4: excluded contents out, their directories in, unlogged main forks out, tablespaces under pg_tblspc/<oid>', async () => {
  const pgdata = join(root, 'data');
  const spc = join(root, 'spc');
  const waldir = join(root, 'waldir');
  await tree(pgdata, {
    PG_VERSION: '17\n',
    'global/pg_control': 'c',
    'global/1262': 'r',
    'global/pg_internal.init': 'x',
    'base/5/16384': 'logged',
    'base/5/16384_fsm': 'fsm',
    'base/5/16400': 'unlogged main',
    'base/5/16400.1': 'unlogged main segment 1',
    'base/5/16400_fsm': 'unlogged fsm',
    'base/5/16400_init': 'init',
    'base/5/t3_16500': 'temp relation',
    'base/5/pg_internal.init': 'x',
    'base/pgsql_tmp/pgsql_tmp99.1': 'spill',
    'pg_replslot/slot/state': 's',
    'pg_dynshmem/mmap.1': 'd',
    'pg_notify/0000': 'n',
    'pg_serial/0000': 's',
    'pg_snapshots/0001': 's',
    'pg_stat_tmp/global.stat': 's',
    'pg_subtrans/0000': 's',
    'pg_xact/0000': 'x',
    'pg_tblspc': null,
    postmaster_pid_lookalike: 'kept',
    'postmaster.pid': '1',
    'postmaster.opts': 'o',
    backup_label: 'stale',
    'standby.signal': '',
    'postgresql.auto.conf': 'a',
    'postgresql.auto.conf.tmp': 't',
  });
  await tree(waldir, { '000000010000000000000001': 'w', 'archive_status/000000010000000000000001.done': '', 'walship/archived/x': '' });
  await symlink(waldir, join(pgdata, 'pg_wal'));
  await tree(spc, { 'PG_17_202406281/5/16390': 'in tablespace', 'PG_16_202307071/5/16390': 'another major' });
  await symlink(spc, join(pgdata, 'pg_tblspc', '16389'));
  await tree(join(root, 'elsewhere'), { 'conf.d/extra.conf': 'e' });
  await symlink(join(root, 'elsewhere', 'conf.d'), join(pgdata, 'conf.d'));

  const { entries, tablespaces } = await walkDataDirectory(pgdata, { tablespaceVersionDirectory: 'PG_17_202406281' });
  const byPath = new Map(entries.map((e) => [e.path, e.type]));
  const files = entries.filter((e) => e.type === 'file').map((e) => e.path).sort();
  assert.deepEqual(files, [
    'PG_VERSION',
    'base/5/16384',
    'base/5/16384_fsm',
    'base/5/16400_init',
    'conf.d/extra.conf',
    'global/1262',
    'global/pg_control',
    'pg_tblspc/16389/PG_17_202406281/5/16390',
    'pg_xact/0000',
    'postgresql.auto.conf',
    'postmaster_pid_lookalike',
  ]);
  for (const dir of ['pg_wal', 'pg_wal/archive_status', 'pg_replslot', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_stat_tmp', 'pg_subtrans', 'pg_tblspc', 'base/5', 'pg_tblspc/16389/PG_17_202406281/5', 'conf.d']) {
    assert.equal(byPath.get(dir), 'dir', dir);
  }
  assert.ok(!byPath.has('pg_wal/walship') && !byPath.has('pg_replslot/slot') && !byPath.has('base/pgsql_tmp') && !byPath.has('pg_tblspc/16389'));
  assert.deepEqual(tablespaces, [{ oid: '16389', location: spc }]);
  // Directories come before what they contain.
  const seen = new Set<string>();
  for (const e of entries) {
    const parent = e.path.split('/').slice(0, -1).join('/');
    if (parent && !parent.startsWith('pg_tblspc/16389')) assert.ok(seen.has(parent), `${e.path} before ${parent}`);
    seen.add(e.path);
  }
});

test('unlogged relations keep only their init fork; temporary relations are skipped', () => {
  const skipped = skippedRelationFiles(['100', '100.1', '100_fsm', '100_vm', '100_init', '200', '200_init.1', 't5_300', 't5_300_fsm', '400', 'PG_VERSION']);
  assert.deepEqual([...skipped].sort(), ['100', '100.1', '100_fsm', '100_vm', '200', 't5_300', 't5_300_fsm']);
});

test('unsafePath refuses what could leave the target', () => {
  for (const bad of ['', '/etc/passwd', '../x', 'a/../../x', 'a//b', 'a/./b', 'a/', 'a\0b']) assert.ok(unsafePath(bad), JSON.stringify(bad));
  for (const good of ['PG_VERSION', 'base/5/16384', 'pg_tblspc/1/PG_17_1/5/2', '..hidden', 'a..b']) assert.equal(unsafePath(good), undefined, good);
});

test('checkManifest refuses links that leave the data directory, duplicates, unknown parts', () => {
  const base = { format: 1, systemIdentifier: '1', backupLabel: '', tablespaceMap: '', tablespaces: [], parts: [{ number: 1, size: 0, storedSize: 0, files: 0 }] } as unknown as BackupManifest;
  const file = { path: 'a', type: 'file' as const, mode: 0o600, mtime: 0, size: 1, sha256: 'a'.repeat(64), part: 1 };
  assert.doesNotThrow(() => checkManifest({ ...base, files: [file, { path: 'd/link', type: 'symlink', mode: 0, mtime: 0, target: '../a' }] }, 'm'));
  assert.throws(() => checkManifest({ ...base, files: [{ path: 'd/link', type: 'symlink', mode: 0, mtime: 0, target: '../../a' }] }, 'm'), /leaves the data directory/);
  assert.throws(() => checkManifest({ ...base, files: [{ path: 'link', type: 'symlink', mode: 0, mtime: 0, target: '/etc' }] }, 'm'), /leaves the data directory/);
  assert.throws(() => checkManifest({ ...base, files: [file, file] }, 'm'), /listed twice/);
  assert.throws(() => checkManifest({ ...base, files: [{ ...file, part: 2 }] }, 'm'), /bad size, sha256 or part/);
  assert.throws(() => checkManifest({ ...base, format: 2, files: [] }, 'm'), /format 2 is not supported/);
  assert.throws(() => checkManifest({ ...base, files: [], tablespaces: [{ oid: '1', location: 'relative' }] }, 'm'), /bad tablespace/);
});

test('backup names', () => {
  for (const ok of ['base_000000010000000000000002', 'nightly-2026.11.27', 'x']) assert.ok(validBackupName(ok), ok);
  for (const bad of ['', 'LATEST', '.hidden', 'a/b', 'a b', '../x', 'x'.repeat(200)]) assert.ok(!validBackupName(bad), bad);
});
