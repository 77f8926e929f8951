import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import type { BackupSummary } from '../../src/backup/manifest.ts';
import { ArchiveIndex } from '../../src/restore/archive.ts';
import { planRestore, type PlanOptions } from '../../src/restore/plan.ts';
import { parseTarget } from '../../src/restore/target.ts';
import { ObjectNotFoundError, type ObjectInfo, type Storage } from '../../src/storage/storage.ts';

/** An in-memory repository: enough Storage for listing and reading WAL. */
function memoryStorage(objects: Record<string, string>): Storage {
  const at = new Date('2026-11-27T14:00:00Z');
  return {
    location: 'memory://',
    async put() {},
    async get(key) {
      if (!(key in objects)) throw new ObjectNotFoundError(key, 'memory://');
      return Readable.from([Buffer.from(objects[key]!)]);
    },
    async head(key) {
      return key in objects ? { key, size: objects[key]!.length, modified: at } : undefined;
    },
    async *list(prefix): AsyncIterable<ObjectInfo> {
      for (const key of Object.keys(objects).sort()) if (key.startsWith(prefix)) yield { key, size: objects[key]!.length, modified: at };
    },
    async delete() {},
  };
}

const seg = (tli: number, n: number) => `${tli.toString(16).toUpperCase().padStart(8, '0')}00000000${n.toString(16).toUpperCase().padStart(8, '0')}`;
const lsn = (segNo: number, offset = 0x28) => `0/${(segNo * 0x1000000 + offset).toString(16).toUpperCase()}`;

function backup(name: string, startSeg: number, stopSeg: number, stopTime: string, timeline = 1): BackupSummary {
  return {
    format: 1,
    name,
    walshipVersion: 't',
    pgVersion: 170000,
    pgMajor: 17,
    systemIdentifier: '7',
    timeline,
    startLsn: lsn(startSeg),
    stopLsn: lsn(stopSeg, 0x100),
    startWalFile: seg(timeline, startSeg),
    stopWalFile: seg(timeline, stopSeg),
    startTime: stopTime,
    stopTime,
    walSegmentSize: 16 << 20,
    permanent: false,
    size: 1,
    storedSize: 1,
    durationMs: 1,
    parts: 1,
    checksumFailures: 0,
    encrypted: false,
    compression: 'zstd',
  };
}

async function archive(segments: string[], histories: Record<number, string> = {}): Promise<ArchiveIndex> {
  const objects: Record<string, string> = {};
  for (const s of segments) objects[`wal/${s}`] = 'x';
  for (const [tli, text] of Object.entries(histories)) objects[`wal/${Number(tli).toString(16).toUpperCase().padStart(8, '0')}.history`] = text;
  return ArchiveIndex.scan(memoryStorage(objects), undefined);
}

const range = (tli: number, from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => seg(tli, from + i));
const opts = (flags: Parameters<typeof parseTarget>[0], more: Partial<PlanOptions> = {}): PlanOptions => ({ target: parseTarget(flags), timeline: { kind: 'latest' }, standby: false, ...more });

const backups = [backup('base_a', 2, 2, '2026-11-27T10:00:00Z'), backup('base_b', 5, 6, '2026-11-27T12:00:00Z'), backup('base_c', 9, 9, '2026-11-27T14:00:00Z')];

describe('restore plan: which backup, and is the WAL there', () => {
  test('time and LSN targets take the newest backup that ends before them', async () => {
    const wal = await archive(range(1, 2, 12));
    assert.equal((await planRestore(backups, wal, opts({ targetTime: '2026-11-27 13:00:00+00' }))).backup.name, 'base_b');
    assert.equal((await planRestore(backups, wal, opts({ targetTime: '2026-11-27 12:00:00Z' }))).backup.name, 'base_b');
    assert.equal((await planRestore(backups, wal, opts({ targetTime: '2026-11-27 11:59:59.999+00' }))).backup.name, 'base_a');
    assert.equal((await planRestore(backups, wal, opts({ targetTime: '2026-11-27 16:00:00+02' }))).backup.name, 'base_c');
    assert.equal((await planRestore(backups, wal, opts({ targetLsn: lsn(8) }))).backup.name, 'base_b');
    const plan = await planRestore(backups, wal, opts({ targetLsn: lsn(8) }));
    assert.deepEqual([plan.firstSegment, plan.lastSegment], [seg(1, 5), seg(1, 8)]);
  });

  test('transaction, restore point, latest and --immediate take the newest backup; --backup picks another', async () => {
    const wal = await archive(range(1, 2, 12));
    for (const flags of [{ targetXid: '1234' }, { targetName: 'p' }, {}, { immediate: true }]) {
      assert.equal((await planRestore(backups, wal, opts(flags))).backup.name, 'base_c');
    }
    const immediate = await planRestore(backups, wal, opts({ immediate: true }));
    assert.deepEqual([immediate.firstSegment, immediate.lastSegment], [seg(1, 9), seg(1, 9)]);
    const latest = await planRestore(backups, wal, opts({}));
    assert.equal(latest.lastSegment, seg(1, 12), 'all archived WAL up to the newest segment is checked');
    assert.equal((await planRestore(backups, wal, opts({ targetXid: '1' }, { backup: 'base_a' }))).backup.name, 'base_a');
    await assert.rejects(planRestore(backups, wal, opts({ targetTime: '2026-11-27 11:00:00Z' }, { backup: 'base_c' })), /backup base_c ends at .* after the target/);
    await assert.rejects(planRestore(backups, wal, opts({}, { backup: 'base_zz' })), /no complete backup named base_zz/);
  });

  test('a target before every backup is refused with the earliest restorable time', async () => {
    const wal = await archive(range(1, 2, 12));
    await assert.rejects(planRestore(backups, wal, opts({ targetTime: '2026-11-27 09:00:00Z' })), (err: Error & { exitCode?: number }) => {
      assert.equal(err.exitCode, 3);
      assert.match(err.message, /no backup ends before the target time 2026-11-27 09:00:00Z; the earliest restorable time is 2026-11-27T10:00:00Z \(the end of backup base_a\)/);
      return true;
    });
    await assert.rejects(planRestore(backups, wal, opts({ targetLsn: '0/1000000' })), /the earliest restorable LSN is 0\/2000100/);
    await assert.rejects(planRestore([], wal, opts({})), /no complete backup/);
  });

  test('a gap in the archive is refused with the first missing segment', async () => {
    const wal = await archive([...range(1, 2, 10), ...range(1, 12, 14)]);
    await assert.rejects(planRestore(backups, wal, opts({ targetTime: '2026-11-27 15:00:00Z' })), /WAL segment 00000001000000000000000B is missing from the archive: backup base_c needs continuous WAL from 000000010000000000000009 to 00000001000000000000000E on timeline 1; the archive is continuous up to 00000001000000000000000A/);
    // An LSN target before the gap is fine; one inside it is not.
    assert.equal((await planRestore(backups, wal, opts({ targetLsn: lsn(10) }))).backup.name, 'base_c');
    await assert.rejects(planRestore(backups, wal, opts({ targetLsn: lsn(13) })), /segment 00000001000000000000000B is missing/);
    // The backup's own WAL must be there.
    const holes = await archive([...range(1, 2, 4), ...range(1, 6, 12)]);
    await assert.rejects(planRestore(backups, holes, opts({ targetLsn: lsn(7) })), /WAL segment 000000010000000000000005 is missing/);
  });

  test('an LSN target beyond the archived WAL is refused', async () => {
    const wal = await archive(range(1, 2, 12));
    await assert.rejects(planRestore(backups, wal, opts({ targetLsn: lsn(20) })), /the target LSN 0\/14000028 is beyond the archived WAL: segment 00000001000000000000000D is not archived yet \(newest archived on timeline 1: 00000001000000000000000C\)/);
  });

  test('timelines: WAL is taken from the newest timeline of the history, as PostgreSQL reads it', async () => {
    // Timeline 2 branched from 1 at segment 7: segments 7.. come from timeline 2; timeline 1 went on to 12 (an abandoned branch).
    const history = { 2: '1\t0/7000100\tno recovery target specified\n' };
    const wal = await archive([...range(1, 2, 12), ...range(2, 7, 10)], history);
    const plan = await planRestore(backups, wal, opts({}));
    assert.equal(plan.timeline, 2);
    assert.equal(plan.backup.name, 'base_b', 'base_c ended on timeline 1 after the branch point: not in the history of timeline 2');
    assert.deepEqual([plan.firstSegment, plan.lastSegment], [seg(1, 5), seg(2, 10)]);

    const current = await planRestore(backups, wal, opts({}, { timeline: { kind: 'current' } }));
    assert.deepEqual([current.backup.name, current.timeline, current.lastSegment], ['base_c', 1, seg(1, 12)]);

    const gap = await archive([...range(1, 2, 12), ...range(2, 7, 7), ...range(2, 9, 10)], history);
    await assert.rejects(planRestore(backups, gap, opts({})), /WAL segment 000000020000000000000008 is missing/);

    // Only a backup after the branch on the abandoned timeline: no way to timeline 2.
    await assert.rejects(planRestore([backups[2]!], wal, opts({})), /backup base_c \(timeline 1, ending at 0\/9000100\) is not in the history of timeline 2/);
    // An explicit timeline without a history file.
    await assert.rejects(planRestore(backups, wal, opts({}, { timeline: { kind: 'number', timeline: 3 } })), /timeline 3 has no history file in the archive/);
  });

  test('a backup of another system identifier is refused', async () => {
    const wal = await archive(range(1, 2, 12));
    await assert.rejects(planRestore(backups, wal, opts({}, { systemIdentifier: '8' })), /backup base_c is of database system 7, but the repository belongs to 8/);
  });
});
