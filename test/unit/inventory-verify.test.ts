/**
 * WAL inventory (src/wal/inventory.ts) and verification (src/wal/verify.ts) on a file:// repository
 * filled with synthetic segments written through the real codec: gaps per timeline, lineage
 * across a timeline switch, a missing .history, corrupt and misnamed objects, backups' own ranges.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { encodeObject } from '../../src/codec/codec.ts';
import { segmentFileName } from '../../src/pg/wal-names.ts';
import { parseTimelineHistory } from '../../src/pg/timeline-history.ts';
import { FileStorage } from '../../src/storage/file.ts';
import { buildInventory, findGaps, lineageRanges, listArchivedWal, loadInventory, timelineForSegment } from '../../src/wal/inventory.ts';
import { verifyArchive, verifyExitCode } from '../../src/wal/verify.ts';
import type { BackupDescriptor } from '../../src/retention/plan.ts';
import { makeSegment, tempDir } from '../helpers/wal-files.ts';

const MiB = 1 << 20;
const size = MiB;

async function store(storage: FileStorage, name: string, bytes: Buffer): Promise<void> {
  await storage.put(`wal/${name}`, await encodeObject(Readable.from([bytes]), { compression: 'zstd' }));
}

async function repo(segments: { timeline: number; from: number; to: number }[], histories: Record<number, string> = {}) {
  const dir = tempDir('inventory');
  const storage = new FileStorage(dir.path);
  for (const r of segments) {
    for (let s = r.from; s <= r.to; s++) {
      const seg = makeSegment({ segNo: BigInt(s), timeline: r.timeline, segmentSize: size });
      await store(storage, seg.name, seg.bytes);
    }
  }
  for (const [tl, text] of Object.entries(histories)) await store(storage, `${Number(tl).toString(16).toUpperCase().padStart(8, '0')}.history`, Buffer.from(text));
  return { dir, storage };
}

function backup(name: string, timeline: number, startSeg: number, stopSeg: number, permanent = false): BackupDescriptor {
  return {
    name,
    timeline,
    startLsn: BigInt(startSeg) * BigInt(size) + 40n,
    stopLsn: BigInt(stopSeg) * BigInt(size) + 200n,
    startTime: new Date(Date.UTC(2026, 10, 20, startSeg)),
    stopTime: new Date(Date.UTC(2026, 10, 20, startSeg, 5)),
    permanent,
    bytes: 1,
  };
}

describe('inventory', () => {
  test('findGaps reports every missing run with file names', () => {
    const gaps = findGaps(1, [1n, 2n, 5n, 6n, 9n], 16 * MiB);
    assert.deepEqual(gaps.map((g) => [g.first, g.last, g.count]), [
      [segmentFileName(1, 3n, 16 * MiB), segmentFileName(1, 4n, 16 * MiB), 2n],
      [segmentFileName(1, 7n, 16 * MiB), segmentFileName(1, 8n, 16 * MiB), 2n],
    ]);
    // Across a log boundary (256 segments of 16 MiB per log): ...FF then next log's 00 is contiguous.
    assert.deepEqual(findGaps(1, [255n, 256n], 16 * MiB), []);
  });

  test('lineage ranges: the segment holding the switchpoint is read from the new timeline', () => {
    // Timeline 2 branched from 1 at 0/3800000 (in segment 3 of 16 MiB), 3 from 2 at 0/6000000 (exactly at segment 6).
    const history = parseTimelineHistory('1\t0/3800000\tno recovery target specified\n2\t0/6000000\tbefore 2000-01-01\n', 3);
    const ranges = lineageRanges(3, history, 16 * MiB);
    assert.deepEqual(ranges, [
      { timeline: 1, from: 0n, to: 2n },
      { timeline: 2, from: 3n, to: 5n },
      { timeline: 3, from: 6n, to: undefined },
    ]);
    assert.equal(timelineForSegment(ranges, 2n), 1);
    assert.equal(timelineForSegment(ranges, 3n), 2);
    assert.equal(timelineForSegment(ranges, 100n), 3);
  });

  test('buildInventory groups per timeline with partials, .backup files and histories', async () => {
    const { dir, storage } = await repo([{ timeline: 1, from: 1, to: 4 }, { timeline: 2, from: 4, to: 7 }], { 2: '1\t0/400100\tpromoted\n' });
    try {
      await storage.put(`wal/${segmentFileName(1, 4n, size)}.partial`, Buffer.from('x'));
      await storage.put('wal/notes.txt', Buffer.from('x'));
      const inventory = buildInventory(await listArchivedWal(storage), size);
      assert.deepEqual(inventory.timelines.map((t) => [t.timeline, t.first, t.last, t.count, t.gaps.length, t.partials.length, t.hasHistory]), [
        [1, segmentFileName(1, 1n, size), segmentFileName(1, 4n, size), 4, 0, 1, false],
        [2, segmentFileName(2, 4n, size), segmentFileName(2, 7n, size), 4, 0, 0, true],
      ]);
      assert.deepEqual(inventory.foreign.map((f) => f.key), ['wal/notes.txt']);
      const loaded = await loadInventory(storage, undefined);
      assert.equal(loaded.inventory.segmentSize, size, 'segment size read from a segment header');
      assert.deepEqual(loaded.histories.get(2), [{ timeline: 1, switchpoint: 0x400100n, reason: 'promoted' }]);
    } finally {
      dir.remove();
    }
  });
});

describe('verifyArchive', () => {
  test('a continuous archive across a timeline switch passes; the old timeline past the switch is not required', async () => {
    // Timeline 1: 1..6 (5, 6 are after the switch: the abandoned future); timeline 2 from segment 4 (switch at 0/4000100).
    const { dir, storage } = await repo([{ timeline: 1, from: 1, to: 6 }, { timeline: 2, from: 4, to: 8 }], { 2: '1\t0/400100\tpromoted\n' });
    try {
      const { inventory, histories } = await loadInventory(storage, undefined);
      const report = await verifyArchive(storage, undefined, { inventory, histories, backups: [backup('b1', 1, 2, 3), backup('b2', 2, 6, 6)] });
      assert.deepEqual(report.gaps, []);
      assert.deepEqual(report.corrupt, []);
      assert.equal(report.ok, true);
      assert.equal(report.from, segmentFileName(1, 2n, size));
      assert.equal(report.to, segmentFileName(2, 8n, size));
      assert.equal(verifyExitCode(report), 0);
      assert.ok(report.backups.every((b) => b.restorable));
    } finally {
      dir.remove();
    }
  });

  test('a gap on the lineage fails with exit 3 and names the segments; gaps below the floor do not matter', async () => {
    const { dir, storage } = await repo([{ timeline: 1, from: 1, to: 1 }, { timeline: 1, from: 3, to: 5 }, { timeline: 2, from: 4, to: 5 }, { timeline: 2, from: 8, to: 9 }], {
      2: '1\t0/400100\tpromoted\n',
    });
    try {
      const { inventory, histories } = await loadInventory(storage, undefined);
      const report = await verifyArchive(storage, undefined, { inventory, histories, backups: [backup('b1', 1, 3, 3)] });
      assert.deepEqual(report.gaps.map((g) => [g.timeline, g.first, g.last, g.count]), [[2, segmentFileName(2, 6n, size), segmentFileName(2, 7n, size), 2]]);
      assert.equal(verifyExitCode(report), 3);
    } finally {
      dir.remove();
    }
  });

  test('a missing .history file is a problem (exit 3): recovery cannot follow the timeline', async () => {
    const { dir, storage } = await repo([{ timeline: 1, from: 1, to: 3 }, { timeline: 2, from: 3, to: 4 }]);
    try {
      const { inventory, histories } = await loadInventory(storage, undefined);
      const report = await verifyArchive(storage, undefined, { inventory, histories, backups: [backup('b1', 1, 1, 1)] });
      assert.match(report.problems.join('\n'), /00000002\.history is not archived/);
      assert.equal(verifyExitCode(report), 3);
    } finally {
      dir.remove();
    }
  });

  test('corrupt, truncated and misnamed objects fail with exit 4, each named', async () => {
    const { dir, storage } = await repo([{ timeline: 1, from: 1, to: 6 }]);
    try {
      const flipped = segmentFileName(1, 2n, size);
      const path = `${dir.path}/wal/${flipped}`;
      const { readFileSync, writeFileSync } = await import('node:fs');
      const bytes = readFileSync(path);
      bytes[bytes.length >> 1]! ^= 0x40;
      writeFileSync(path, bytes);
      // Segment 4's object holds segment 5's bytes (misnamed); segment 6 is truncated (stored without compression).
      const five = makeSegment({ segNo: 5n, segmentSize: size });
      await storage.delete([`wal/${segmentFileName(1, 4n, size)}`, `wal/${segmentFileName(1, 6n, size)}`]);
      await storage.put(`wal/${segmentFileName(1, 4n, size)}`, await encodeObject(Readable.from([five.bytes]), { compression: 'lz4' }));
      await storage.put(`wal/${segmentFileName(1, 6n, size)}`, makeSegment({ segNo: 6n, segmentSize: size }).bytes.subarray(0, size / 2));
      const { inventory, histories } = await loadInventory(storage, undefined, size);
      const report = await verifyArchive(storage, undefined, { inventory, histories, backups: [backup('b1', 1, 1, 2)] }, { systemIdentifier: '7300000000000000001' });
      assert.deepEqual(report.corrupt.map((c) => c.name), [2n, 4n, 6n].map((s) => segmentFileName(1, s, size)));
      assert.match(report.corrupt[0]!.reason, /corrupt/i);
      assert.match(report.corrupt[1]!.reason, /not 0\/400000 as its name says/);
      assert.match(report.corrupt[2]!.reason, /decodes to 524288 bytes/);
      assert.equal(verifyExitCode(report), 4);
      // A foreign system identifier is reported too.
      const foreign = await verifyArchive(storage, undefined, { inventory, histories, backups: [] }, { systemIdentifier: '1' });
      assert.ok(foreign.corrupt.some((c) => /written by database system 7300000000000000001, not 1/.test(c.reason)));
      // Continuity only: nothing decoded, no corruption seen.
      const quick = await verifyArchive(storage, undefined, { inventory, histories, backups: [] }, { decode: false });
      assert.equal(quick.checkedObjects, 0);
      assert.equal(quick.ok, true);
    } finally {
      dir.remove();
    }
  });

  test('a permanent backup older than the window needs only its own range; a missing piece of it is reported', async () => {
    const { dir, storage } = await repo([{ timeline: 1, from: 2, to: 2 }, { timeline: 1, from: 10, to: 12 }]);
    try {
      const { inventory, histories } = await loadInventory(storage, undefined);
      const report = await verifyArchive(storage, undefined, { inventory, histories, backups: [backup('p', 1, 2, 3, true), backup('b', 1, 10, 10)] });
      assert.deepEqual(report.gaps.map((g) => [g.first, g.neededBy]), [[segmentFileName(1, 3n, size), 'p']]);
      assert.equal(report.backups.find((b) => b.name === 'p')!.restorable, false);
      assert.equal(report.backups.find((b) => b.name === 'b')!.restorable, true);
    } finally {
      dir.remove();
    }
  });
});
