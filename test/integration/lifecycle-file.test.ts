/**
 * Issue 8's contract on real PostgreSQL 15 and a file:// repository: four backups over two
 * timelines (the second made by restore + promote), a permanent one; then
 * - `delete retain 2` as a dry run deletes nothing; confirmed, it removes exactly the planned
 *   backup and exactly the WAL no kept backup needs (checked against the repository's files);
 * - every kept backup still restores to a point inside its range;
 * - `delete retain 1` killed with SIGKILL right after it removed a backup's manifest leaves a
 *   repository that wal-verify and restore accept, and a second run finishes the job exactly;
 *   the permanent backup survives retain 1 and restores;
 * - wal-verify with pg_waldump passes; a missing segment and a corrupt object make it fail
 *   (exit 3, exit 4) naming the segment;
 * - check and status report on the live cluster; a repository of another cluster is exit 3.
 * Segments of 1 MiB keep it quick.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, watch, writeFileSync, chmodSync, renameSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { parseLsn, parseWalFileName, segmentNumber } from '../../src/pg/wal-names.ts';
import { chownToServerUser, makeServerOwnedDir, startFromDataDir, type Cluster } from '../helpers/pg-cluster.ts';
import { archivingCluster, cli, makeRepository, pgEnv, restoreTarget, walship, walshipOk, type Repository } from './backup-support.ts';

const MAJOR = 15;
const segSize = 1 << 20;

interface Listed {
  name: string;
  timeline: number;
  startLsn: string;
  stopLsn: string;
  permanent: boolean;
}

/** Every file of the repository with its size and mtime (what a dry run must not change). */
function snapshot(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      const info = statSync(path);
      if (info.isDirectory()) walk(path);
      else out.set(relative(root, path), `${info.size}/${info.mtimeMs}`);
    }
  };
  walk(root);
  return out;
}

const seg = (lsn: string) => parseLsn(lsn) / BigInt(segSize);

/** What retention must delete, computed from the files: WAL below the floor outside the pinned ranges, and the named backups' objects. */
function expectedDeletion(before: Map<string, string>, floor: bigint, pinned: [bigint, bigint][], backups: string[]): string[] {
  const gone: string[] = [];
  for (const path of before.keys()) {
    if (path.startsWith('wal/')) {
      const wal = parseWalFileName(path.slice(4));
      if (!wal || wal.kind === 'history' || wal.segmentId === undefined) continue;
      const s = segmentNumber(wal.segmentId, segSize);
      if (s < floor && !pinned.some(([a, b]) => s >= a && s <= b)) gone.push(path);
    } else if (backups.some((b) => path.startsWith(`backups/${b}/`))) gone.push(path);
  }
  return gone.sort();
}

async function switchAndWait(cluster: Cluster, repo: Repository): Promise<void> {
  const last = await cluster.sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
  await cluster.sql('SELECT pg_switch_wal()');
  for (let i = 0; i < 600 && !existsSync(join(repo.repo, 'wal', last)); i++) await sleep(100);
  assert.ok(existsSync(join(repo.repo, 'wal', last)), `${last} was not archived`);
}

async function backupPush(cluster: Cluster, repo: Repository, extra: string[] = []): Promise<Listed> {
  const before = new Set((await list(repo)).map((b) => b.name));
  await walshipOk(['--config', repo.config, 'backup-push', '--fast', ...extra], { env: pgEnv(cluster) });
  const added = (await list(repo)).filter((b) => !before.has(b.name));
  assert.equal(added.length, 1);
  return added[0]!;
}

async function list(repo: Repository): Promise<Listed[]> {
  return JSON.parse((await walshipOk(['--config', repo.config, 'backup-list', '--json'])).stdout) as Listed[];
}

/** Restore into a fresh directory, start it without archiving, return its batches. */
async function restoreAndCount(repo: Repository, args: string[], check?: (copy: Cluster) => Promise<void>): Promise<string> {
  const target = await restoreTarget('walship-life-');
  await walshipOk(['--config', repo.config, 'restore', target, ...args, '--target-action', 'promote']);
  await using copy = await startFromDataDir(target, MAJOR, { wait: false, removeDataDir: true, settings: { archive_mode: 'off' } });
  assert.equal(await copy.waitForRecoveryEnd(120_000), 'promoted');
  await check?.(copy);
  return (await copy.sql("SELECT batch FROM ev GROUP BY batch ORDER BY min(id)")).split('\n').join(',');
}

test('retention, permanent backups, kill -9 mid-delete, wal-verify, check and status on PostgreSQL 15 with file://', { timeout: 600_000 }, async (t) => {
  const repo = await makeRepository({ compression: 'zstd', backupPartSize: '1MiB' });
  // file:// repositories must exist before first use (an unmounted directory is not created).
  await mkdir(repo.repo, { recursive: true });
  await chownToServerUser(repo.repo);
  const config = ['--config', repo.config];

  // --- Timeline 1: two backups -----------------------------------------------------------------
  const primary = await archivingCluster(MAJOR, repo, { walSegmentSizeMB: 1 });
  let promoted: Cluster | undefined;
  try {
    await primary.sql("CREATE TABLE ev (id serial PRIMARY KEY, batch text NOT NULL, pad text)");
    await primary.sql("INSERT INTO ev (batch, pad) SELECT 'p0', repeat('x', 500) FROM generate_series(1, 3000)");
    const b1 = await backupPush(primary, repo);
    await primary.sql("INSERT INTO ev (batch, pad) SELECT 'b1', repeat('y', 500) FROM generate_series(1, 3000)");
    await switchAndWait(primary, repo);
    const b2 = await backupPush(primary, repo);
    await primary.sql("INSERT INTO ev (batch) VALUES ('b2')");
    const t2 = await primary.sql('SELECT clock_timestamp()::text');
    await sleep(50);
    await primary.sql("INSERT INTO ev (batch) VALUES ('abandoned')");
    await switchAndWait(primary, repo);
    await primary.stop('fast');

    // --- Timeline 2: restore b2 to t2 and promote; it archives into the same repository --------
    const dir = await restoreTarget('walship-life-tl2-');
    await walshipOk([...config, 'restore', dir, '--target-time', t2, '--target-action', 'promote']);
    promoted = await startFromDataDir(dir, MAJOR, { wait: false, removeDataDir: true });
    assert.equal(await promoted.waitForRecoveryEnd(120_000), 'promoted');
    for (let i = 0; i < 300 && !existsSync(join(repo.repo, 'wal', '00000002.history')); i++) await sleep(100);
    assert.ok(existsSync(join(repo.repo, 'wal', '00000002.history')), 'the new timeline history is archived');
    const tl2 = promoted;
    const b3 = await backupPush(tl2, repo);
    await tl2.sql("INSERT INTO ev (batch, pad) SELECT 'b3', repeat('z', 500) FROM generate_series(1, 2000)");
    const t3 = await tl2.sql('SELECT clock_timestamp()::text');
    await tl2.sql("INSERT INTO ev (batch) VALUES ('after-t3')");
    await switchAndWait(tl2, repo);
    const b4 = await backupPush(tl2, repo);
    await tl2.sql("INSERT INTO ev (batch) VALUES ('b4')");
    const t4 = await tl2.sql('SELECT clock_timestamp()::text');
    await tl2.sql("INSERT INTO ev (batch) VALUES ('after-t4')");
    await switchAndWait(tl2, repo);
    assert.deepEqual([b1, b2, b3, b4].map((b) => b.timeline), [1, 1, 2, 2]);

    // --- wal-show, wal-verify (with pg_waldump), check, status on the healthy repository -------
    const shown = JSON.parse((await walshipOk([...config, 'wal-show', '--json'])).stdout) as { timelines: { timeline: number; parent: number | null; backups: string[]; gaps: unknown[] }[] };
    assert.deepEqual(shown.timelines.map((t) => [t.timeline, t.parent, t.backups.length]), [[1, null, 2], [2, 1, 2]]);
    const verified = await walship([...config, 'wal-verify', '--waldump', '--json']);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    const v = JSON.parse(verified.stdout) as { waldump: { segments: number }; to: string; timeline: number };
    assert.ok(v.waldump.segments > 0, 'pg_waldump decoded the segments');
    assert.equal(v.timeline, 2);

    const checked = await walship([...config, 'check', '--switch-wal', '--json'], { env: tl2.env() });
    assert.equal(checked.code, 0, checked.stdout + checked.stderr);
    const checks = JSON.parse(checked.stdout) as { checks: { name: string; status: string }[] };
    for (const name of ['storage', 'archive_mode', 'archive_command', 'system identifier', 'switch-wal']) {
      assert.equal(checks.checks.find((c) => c.name === name)?.status, 'ok', `${name}: ${checked.stdout}`);
    }
    const status = JSON.parse((await walshipOk([...config, 'status', '--json'], { env: tl2.env() })).stdout);
    assert.equal(status.backups.count, 4);
    assert.equal(status.backups.newest.name, b4.name);
    assert.equal(status.cluster.reachable, true);
    assert.equal(status.cluster.systemIdentifierMatches, true);
    assert.ok(status.cluster.archiveLagSegments <= 1, `archive lag ${status.cluster.archiveLagSegments}`);
    assert.equal(status.wal.timeline, 2);
    assert.ok(status.repository.bytes > 0 && status.repository.walBytes > 0 && status.repository.backupBytes > 0);

    // A repository that belongs to another cluster: exit 3.
    const foreignDir = await makeServerOwnedDir('walship-foreign-');
    await mkdir(join(foreignDir, 'repo'));
    await writeFile(join(foreignDir, 'repo', 'walship.json'), JSON.stringify({ format: 1, systemIdentifier: '1234', created: new Date().toISOString() }));
    await chownToServerUser(foreignDir);
    const foreign = await walship(['check'], { env: { ...tl2.env(), WALSHIP_STORAGE: `file://${join(foreignDir, 'repo')}` } });
    assert.equal(foreign.code, 3, foreign.stdout + foreign.stderr);
    assert.match(foreign.stdout, /fail +system identifier: .* repository belongs to 1234/);

    // No more WAL from here on: the repository changes only by what the commands do.
    await tl2.stop('fast');

    // --- Pin b1; retain 2: dry run first ----------------------------------------------------------
    assert.match((await walshipOk([...config, 'backup-mark', b1.name])).stdout, /permanent/);
    const before = snapshot(repo.repo);
    const dry = await walshipOk([...config, 'delete', 'retain', '2']);
    assert.match(dry.stdout, /dry run/);
    assert.match(dry.stdout, new RegExp(`delete +${b2.name}`));
    assert.match(dry.stdout, new RegExp(`keep +${b1.name}.*permanent`));
    assert.match(dry.stdout, /would delete: 1 backups, 0 incomplete backups, \d+ WAL files/);
    assert.deepEqual(snapshot(repo.repo), before, 'a dry run changes nothing');

    const expected2 = expectedDeletion(before, seg(b3.startLsn), [[seg(b1.startLsn), seg(b1.stopLsn)]], [b2.name]);
    assert.ok(expected2.some((p) => p.startsWith('wal/00000001')), 'some timeline 1 WAL goes');
    const confirmed = await walshipOk([...config, 'delete', 'retain', '2', '--confirm', '--json']);
    const planned = JSON.parse(confirmed.stdout) as { delete: { name: string }[]; wal: { delete: string[] } };
    assert.deepEqual(planned.delete.map((d) => d.name), [b2.name]);
    const after2 = snapshot(repo.repo);
    const gone2 = [...before.keys()].filter((k) => !after2.has(k)).sort();
    assert.deepEqual(gone2, expected2, 'exactly the WAL no kept backup needs, and the deleted backup');
    assert.deepEqual([...after2.keys()].filter((k) => !before.has(k)), [], 'nothing new left behind');
    assert.deepEqual((await list(repo)).map((b) => b.name), [b1.name, b3.name, b4.name]);
    assert.equal((await walship([...config, 'wal-verify'])).code, 0);

    // Kept b3 restores to t3 (inside its range, across the timeline switch).
    assert.equal(await restoreAndCount(repo, ['--target-time', t3]), 'p0,b1,b2,b3');

    // --- retain 1, killed right after the manifest of b3 is gone --------------------------------
    // Many objects under b3 (as a large backup has parts) make the delete take long enough for the kill to land inside it.
    const junk = join(repo.repo, 'backups', b3.name, 'parts', 'extra');
    await mkdir(junk, { recursive: true });
    for (let i = 0; i < 3000; i++) writeFileSync(join(junk, `${String(i).padStart(5, '0')}.tar`), 'x');
    await chownToServerUser(junk);
    const before1 = snapshot(repo.repo);
    const expected1 = expectedDeletion(before1, seg(b4.startLsn), [[seg(b1.startLsn), seg(b1.stopLsn)]], [b3.name]);
    const backupDir = join(repo.repo, 'backups', b3.name);
    const child = spawn(cli, [...config, 'delete', 'retain', '1', '--confirm'], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
    let killedAt = '';
    const watcher = watch(backupDir);
    watcher.on('error', () => {});
    watcher.on('change', () => {
      if (!killedAt && !existsSync(join(backupDir, 'manifest.json'))) {
        child.kill('SIGKILL');
        killedAt = `${snapshot(repo.repo).size} files left`;
      }
    });
    const exit = await new Promise<{ code: number | null; signal: string | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
    watcher.close();
    assert.equal(exit.signal, 'SIGKILL', `delete was not killed (exit ${exit.code}, ${killedAt})`);
    const interrupted = snapshot(repo.repo);
    const goneSoFar = [...before1.keys()].filter((k) => !interrupted.has(k));
    // The manifest went first; whatever else went is part of the plan.
    assert.ok(!interrupted.has(`backups/${b3.name}/manifest.json`));
    assert.deepEqual(goneSoFar.filter((k) => !expected1.includes(k)), []);
    const leftovers = [...interrupted.keys()].some((k) => k.startsWith(`backups/${b3.name}/`));
    assert.ok(leftovers, 'killed inside the deletion of b3');
    t.diagnostic(`kill -9: ${exit.signal ?? `exit ${exit.code}`}, ${killedAt}, ${goneSoFar.length}/${expected1.length} deletions done`);

    // The interrupted repository: b3 is no longer listed, wal-verify passes, b4 restores to t4.
    assert.deepEqual((await list(repo)).map((b) => b.name), [b1.name, b4.name]);
    const afterKill = await walship([...config, 'wal-verify']);
    assert.equal(afterKill.code, 0, afterKill.stdout);
    assert.equal(await restoreAndCount(repo, ['--target-time', t4]), 'p0,b1,b2,b3,after-t3,b4');

    // A second run finishes exactly what an uninterrupted run would have done.
    const rerun = await walshipOk([...config, 'delete', 'retain', '1', '--confirm']);
    assert.match(rerun.stdout, new RegExp(`delete ${b3.name}  incomplete.*left by an interrupted delete`));
    const final = snapshot(repo.repo);
    assert.deepEqual([...before1.keys()].filter((k) => !final.has(k)).sort(), expected1);
    assert.deepEqual([...final.keys()].filter((k) => !before1.has(k)), []);

    // The permanent backup survived retain 1 and restores (to its end: its own WAL is kept).
    assert.deepEqual((await list(repo)).map((b) => b.name), [b1.name, b4.name]);
    assert.equal(
      await restoreAndCount(repo, ['--backup', b1.name, '--immediate'], async (copy) => {
        // A restored copy does not archive: check says so (exit 3).
        const r = await walship(['check'], { env: { ...copy.env(), WALSHIP_STORAGE: `file://${repo.repo}` } });
        assert.equal(r.code, 3, r.stdout);
        assert.match(r.stdout, /fail +archive_mode: archive_mode = off/);
      }),
      'p0',
    );
    assert.equal((await walship([...config, 'wal-verify'])).code, 0);

    // --- A gap and a corrupt object: wal-verify fails naming the segment ----------------------
    const tl2Segments = readdirSync(join(repo.repo, 'wal')).filter((n) => /^00000002[0-9A-F]{16}$/.test(n)).sort();
    assert.ok(tl2Segments.length >= 2, tl2Segments.join(' '));
    // The start segment of b4, the oldest the recovery window needs.
    const missing = tl2Segments[0]!;
    renameSync(join(repo.repo, 'wal', missing), join(repo.repo, `moved-${missing}`));
    const gap = await walship([...config, 'wal-verify']);
    assert.equal(gap.code, 3, gap.stdout);
    assert.match(gap.stdout, new RegExp(`GAP segment ${missing} is missing`));
    renameSync(join(repo.repo, `moved-${missing}`), join(repo.repo, 'wal', missing));

    const victim = tl2Segments.at(-1)!;
    const path = join(repo.repo, 'wal', victim);
    const bytes = readFileSync(path);
    bytes[bytes.length >> 1]! ^= 0xff;
    chmodSync(path, 0o644);
    writeFileSync(path, bytes);
    const corrupt = await walship([...config, 'wal-verify', '--json']);
    assert.equal(corrupt.code, 4, corrupt.stdout);
    const report = JSON.parse(corrupt.stdout) as { corrupt: { name: string }[] };
    assert.deepEqual(report.corrupt.map((c) => c.name), [victim]);
  } finally {
    await promoted?.remove();
    await primary.remove();
  }
});
