/**
 * Carrying out a retention plan (src/retention/execute.ts) against a file:// repository of
 * synthetic WAL and backups, interrupted after every single step (as kill -9 would): each
 * intermediate repository must still verify (wal-verify's checks) with every listed backup whole,
 * and a second run must finish the job, reaching exactly the state an uninterrupted run reaches.
 */
import assert from 'node:assert/strict';
import { cpSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { listBackups } from '../../src/backup/catalog.ts';
import { encodeObject } from '../../src/codec/codec.ts';
import { configureLog } from '../../src/log.ts';
import { formatLsn, segmentFileName } from '../../src/pg/wal-names.ts';
import { keys } from '../../src/repository.ts';
import { loadBackupCatalog, readMark, writeMark } from '../../src/retention/catalog.ts';
import { executePlan } from '../../src/retention/execute.ts';
import { planRetention, type RetentionRule } from '../../src/retention/plan.ts';
import { FileStorage } from '../../src/storage/file.ts';
import { listArchivedWal, loadInventory } from '../../src/wal/inventory.ts';
import { verifyArchive, verifyExitCode } from '../../src/wal/verify.ts';
import { makeSegment, tempDir } from '../helpers/wal-files.ts';

const size = 1 << 20;
configureLog({ level: 'error' });
const hour = 3600_000;
const now = Date.now();

async function addBackup(storage: FileStorage, name: string, startSeg: number, stopSeg: number, hoursAgo: number, permanent = false) {
  const summary = {
    format: 1,
    name,
    timeline: 1,
    startLsn: formatLsn(BigInt(startSeg) * BigInt(size) + 40n),
    stopLsn: formatLsn(BigInt(stopSeg) * BigInt(size) + 300n),
    startWalFile: segmentFileName(1, BigInt(startSeg), size),
    stopWalFile: segmentFileName(1, BigInt(stopSeg), size),
    startTime: new Date(now - hoursAgo * hour).toISOString(),
    stopTime: new Date(now - hoursAgo * hour + 60_000).toISOString(),
    walSegmentSize: size,
    permanent,
    size: 3000,
    storedSize: 300,
    pgMajor: 17,
    pgVersion: 170000,
  };
  for (let p = 1; p <= 3; p++) await storage.put(keys.backupPart(name, p), Buffer.from(`part ${p} of ${name}`));
  await storage.put(keys.backupSummary(name), Buffer.from(JSON.stringify(summary)));
  await storage.put(keys.backupManifest(name), Buffer.from(JSON.stringify(summary)));
}

async function makeRepo(root: string) {
  const storage = new FileStorage(root);
  for (let s = 1; s <= 24; s++) {
    const seg = makeSegment({ segNo: BigInt(s), segmentSize: size });
    await storage.put(keys.wal(seg.name), await encodeObject(Readable.from([seg.bytes]), { compression: 'zstd' }));
  }
  await storage.put(keys.wal(`${segmentFileName(1, 3n, size)}.00000028.backup`), Buffer.from('START WAL LOCATION'));
  await addBackup(storage, `base_${segmentFileName(1, 3n, size)}`, 3, 4, 50, true);
  await addBackup(storage, `base_${segmentFileName(1, 8n, size)}`, 8, 9, 40);
  await addBackup(storage, `base_${segmentFileName(1, 13n, size)}`, 13, 13, 30);
  await addBackup(storage, `base_${segmentFileName(1, 17n, size)}`, 17, 18, 20);
  await addBackup(storage, `base_${segmentFileName(1, 21n, size)}`, 21, 22, 10);
  return storage;
}

function files(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) walk(path);
      else out.push(relative(root, path));
    }
  };
  walk(root);
  return out.sort();
}

async function plan(storage: FileStorage, rule: RetentionRule) {
  const catalog = await loadBackupCatalog(storage, undefined);
  const listing = await listArchivedWal(storage);
  return planRetention({ rule, backups: catalog.backups, incomplete: catalog.incomplete, wal: listing.files, segmentSize: size, now: new Date(), garbageAgeMs: 6 * hour });
}

class Crash extends Error {}

describe('executePlan', () => {
  test('retain 2: deletes exactly the planned objects, and the permanent backup and its WAL stay', async () => {
    const dir = tempDir('retention-exec');
    try {
      const storage = await makeRepo(dir.path);
      const before = files(dir.path);
      const p = await plan(storage, { kind: 'retain', count: 2 });
      assert.deepEqual(p.delete.map((d) => d.backup.name), [`base_${segmentFileName(1, 8n, size)}`, `base_${segmentFileName(1, 13n, size)}`]);
      const result = await executePlan(storage, p);
      const after = files(dir.path);
      const gone = before.filter((f) => !after.includes(f));
      const expectedWal = [1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16].map((s) => `wal/${segmentFileName(1, BigInt(s), size)}`);
      const expectedBackups = [8, 13].flatMap((s) => {
        const n = `base_${segmentFileName(1, BigInt(s), size)}`;
        return [keys.backupManifest(n), keys.backupSummary(n), keys.backupPart(n, 1), keys.backupPart(n, 2), keys.backupPart(n, 3)];
      });
      assert.deepEqual(gone.sort(), [...expectedWal, ...expectedBackups].sort());
      assert.deepEqual(after.filter((f) => !before.includes(f)), [], 'no tombstone or other object left behind');
      assert.equal(result.backups, 2);
      assert.equal(result.wal, 14);
      // The .backup history file of the permanent backup (segment 3) stays with its range.
      assert.ok(after.includes(`wal/${segmentFileName(1, 3n, size)}.00000028.backup`));
    } finally {
      dir.remove();
    }
  });

  test('interrupted after any step, the repository verifies and a second run finishes the job exactly', async () => {
    const template = tempDir('retention-template');
    const reference = tempDir('retention-reference');
    try {
      await makeRepo(template.path);
      cpSync(template.path, reference.path, { recursive: true });
      const refStorage = new FileStorage(reference.path);
      await executePlan(refStorage, await plan(refStorage, { kind: 'retain', count: 1 }));
      const expected = files(reference.path);

      let steps = 0;
      {
        const probe = tempDir('retention-count');
        cpSync(template.path, probe.path, { recursive: true });
        const storage = new FileStorage(probe.path);
        await executePlan(storage, await plan(storage, { kind: 'retain', count: 1 }), { afterDelete: () => void steps++, batchSize: 4 });
        probe.remove();
      }
      assert.ok(steps >= 12, `expected several steps, got ${steps}`);

      for (let crashAt = 1; crashAt <= steps; crashAt++) {
        const run = tempDir(`retention-crash${crashAt}`);
        try {
          cpSync(template.path, run.path, { recursive: true });
          const storage = new FileStorage(run.path);
          let count = 0;
          await assert.rejects(
            executePlan(storage, await plan(storage, { kind: 'retain', count: 1 }), {
              afterDelete: () => {
                if (++count === crashAt) throw new Crash(`killed after step ${crashAt}`);
              },
              batchSize: 4,
            }),
            Crash,
          );
          // Every listed backup is whole; the archive verifies.
          for (const b of await listBackups(storage, undefined)) {
            for (let p = 1; p <= 3; p++) assert.ok(await storage.head(keys.backupPart(b.name, p)), `step ${crashAt}: listed ${b.name} lost part ${p}`);
          }
          const catalog = await loadBackupCatalog(storage, undefined);
          const { inventory, histories } = await loadInventory(storage, undefined, size);
          const report = await verifyArchive(storage, undefined, { inventory, histories, backups: catalog.backups });
          assert.equal(verifyExitCode(report), 0, `step ${crashAt}: ${JSON.stringify(report.gaps)} ${JSON.stringify(report.corrupt)}`);
          // Leftovers of the interrupted delete are garbage at once (tombstone), not a backup-push in progress.
          for (const inc of catalog.incomplete) assert.equal(inc.deleting, true, `step ${crashAt}: ${inc.name} has no tombstone`);
          // A second run completes it.
          await executePlan(storage, await plan(storage, { kind: 'retain', count: 1 }));
          assert.deepEqual(files(run.path), expected, `step ${crashAt}: second run did not reach the uninterrupted result`);
        } finally {
          run.remove();
        }
      }
    } finally {
      template.remove();
      reference.remove();
    }
  });

  test('a backup pinned after the plan was made is kept, and then no WAL is deleted in that run', async () => {
    const dir = tempDir('retention-pin');
    try {
      const storage = await makeRepo(dir.path);
      const p = await plan(storage, { kind: 'retain', count: 1 });
      const pinned = p.delete[1]!.backup.name;
      await writeMark(storage, pinned, true);
      const result = await executePlan(storage, p);
      assert.deepEqual(result.skipped, [pinned]);
      assert.equal(result.wal, 0);
      assert.ok(await storage.head(keys.backupManifest(pinned)));
      assert.equal((await readMark(storage, pinned))?.permanent, true);
      // The next run sees it as permanent.
      const again = await plan(storage, { kind: 'retain', count: 1 });
      assert.ok(again.keep.some((k) => k.backup.name === pinned && k.reason === 'permanent'));
    } finally {
      dir.remove();
    }
  });
});
