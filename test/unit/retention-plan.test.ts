/**
 * Retention planning for base backups and WAL (src/retention/plan.ts): a pure function, so its
 * safety rules are checked here with examples and with fast-check properties over random
 * repositories (timelines, permanent backups, incomplete backups, shuffled inputs).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ExitCode, WalshipError } from '../../src/errors.ts';
import {
  compareBackups,
  parseDuration,
  parseTime,
  planRetention,
  startSegmentOfName,
  walRequirements,
  type BackupDescriptor,
  type PlanInput,
  type WalObject,
} from '../../src/retention/plan.ts';
import { parseWalFileName, segmentFileName, segmentNumber } from '../../src/pg/wal-names.ts';

const MiB = 1 << 20;
const seg = 16 * MiB;
const t0 = Date.UTC(2026, 10, 20, 3, 0);
const hour = 3600_000;

/** A backup starting in segment `startSeg` (on `timeline`) at hour `h`, stopping `len` segments later. */
function backup(startSeg: number, h: number, extra: Partial<BackupDescriptor> = {}, len = 1): BackupDescriptor {
  const timeline = extra.timeline ?? 1;
  return {
    name: `base_${segmentFileName(timeline, BigInt(startSeg), seg)}`,
    timeline,
    startLsn: BigInt(startSeg) * BigInt(seg) + 40n,
    stopLsn: BigInt(startSeg + len) * BigInt(seg) + 100n,
    startTime: new Date(t0 + h * hour),
    stopTime: new Date(t0 + h * hour + 600_000),
    permanent: false,
    bytes: 1000,
    ...extra,
  };
}

function walFile(timeline: number, segNo: number, kind: 'segment' | 'partial' | 'backup' = 'segment'): WalObject {
  const base = segmentFileName(timeline, BigInt(segNo), seg);
  const name = kind === 'segment' ? base : kind === 'partial' ? `${base}.partial` : `${base}.00000028.backup`;
  return { name, key: `wal/${name}`, kind, timeline, segmentId: base.slice(8), size: 100 };
}

function history(timeline: number): WalObject {
  const name = `${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
  return { name, key: `wal/${name}`, kind: 'history', timeline, size: 10 };
}

const range = (from: number, to: number, timeline = 1) => Array.from({ length: to - from + 1 }, (_, i) => walFile(timeline, from + i));
const names = (list: { backup: { name: string } }[]) => list.map((d) => d.backup.name);
const input = (rule: PlanInput['rule'], backups: BackupDescriptor[], wal: WalObject[] = [], extra: Partial<PlanInput> = {}): PlanInput => ({
  rule,
  backups,
  wal,
  segmentSize: seg,
  now: new Date(t0 + 1000 * hour),
  garbageAgeMs: 6 * hour,
  ...extra,
});
const segNoOf = (w: WalObject) => segmentNumber(w.segmentId!, seg);
const code = (c: number) => (err: unknown) => err instanceof WalshipError && err.exitCode === c;

describe('planRetention', () => {
  test('retain N keeps the N newest by start time from the manifest, not by name, and deletes exactly the WAL below the oldest kept start', () => {
    // Names sort the opposite way from the times: b5's name is smallest.
    const b1 = backup(50, 1, { name: 'zz' });
    const b2 = backup(20, 2, { name: 'yy' });
    const b3 = backup(10, 3, { name: 'xx' }); // newest start time, but lowest LSN: e.g. after PITR to the past
    const wal = [...range(5, 60), history(2)];
    const plan = planRetention(input({ kind: 'retain', count: 2 }, [b3, b1, b2], wal));
    assert.deepEqual(names(plan.delete), ['zz']);
    assert.deepEqual(names(plan.keep), ['yy', 'xx']);
    assert.equal(plan.wal.floor?.segNo, 10n);
    assert.deepEqual(plan.wal.delete.map(segNoOf), [5n, 6n, 7n, 8n, 9n]);
    assert.equal(plan.totals.backups, 1);
    assert.equal(plan.totals.wal, 5);
    assert.equal(plan.totals.bytes, 1000 + 5 * 100);
  });

  test('ties in start time fall back to start LSN, then name', () => {
    const a = backup(10, 1, { name: 'b' });
    const b = backup(11, 1, { name: 'a' });
    const c = backup(11, 1, { name: 'c' });
    assert.deepEqual([c, b, a].sort(compareBackups).map((x) => x.name), ['b', 'a', 'c']);
  });

  test('permanent backups survive retain 1, do not count, and pin only their own WAL below the floor', () => {
    const p = backup(10, 1, { permanent: true }, 2);
    const b2 = backup(20, 2);
    const b3 = backup(30, 3);
    const wal = range(8, 35);
    const plan = planRetention(input({ kind: 'retain', count: 1 }, [p, b2, b3], wal));
    assert.deepEqual(names(plan.delete), [b2.name]);
    assert.deepEqual(names(plan.keep), [p.name, b3.name]);
    assert.deepEqual(plan.wal.pinned.map((r) => [r.from, r.to]), [[10n, 12n]]);
    const deleted = plan.wal.delete.map(segNoOf);
    assert.deepEqual(deleted, [8n, 9n, ...Array.from({ length: 17 }, (_, i) => BigInt(13 + i))]);
  });

  test('the newest backup is kept even when permanent ones are older and retain counts only regular ones', () => {
    const plan = planRetention(input({ kind: 'retain', count: 1 }, [backup(10, 1), backup(20, 2, { permanent: true }), backup(30, 3)]));
    assert.deepEqual(names(plan.delete), [backup(10, 1).name]);
  });

  test('when every kept backup is permanent, WAL from the newest one onward is kept', () => {
    const p1 = backup(10, 1, { permanent: true });
    const p2 = backup(20, 2, { permanent: true });
    const plan = planRetention(input({ kind: 'retain', count: 1 }, [p1, p2], range(9, 25)));
    assert.equal(plan.wal.floor?.backup, p2.name);
    assert.deepEqual(plan.wal.delete.map(segNoOf), [9n, 12n, 13n, 14n, 15n, 16n, 17n, 18n, 19n]);
  });

  test('.history files are never deleted; .backup and .partial files below the floor are', () => {
    const wal = [history(2), history(3), walFile(1, 5, 'backup'), walFile(1, 6, 'partial'), walFile(1, 7), walFile(2, 30, 'partial')];
    const plan = planRetention(input({ kind: 'retain', count: 1 }, [backup(10, 1), backup(20, 2)], wal));
    assert.deepEqual(plan.wal.delete.map((w) => w.name).sort(), [walFile(1, 5, 'backup').name, walFile(1, 6, 'partial').name, walFile(1, 7).name].sort());
  });

  test('WAL of every timeline at or above the floor is kept (a backup on timeline 2 needs it across the switch)', () => {
    const b1 = backup(10, 1);
    const b2 = backup(30, 5, { timeline: 2 });
    const wal = [...range(5, 25, 1), ...range(20, 40, 2), history(2)];
    const plan = planRetention(input({ kind: 'retain', count: 1 }, [b1, b2], wal));
    assert.ok(plan.wal.delete.every((w) => segNoOf(w) < 30n));
    assert.ok(plan.wal.delete.some((w) => w.timeline === 2));
    assert.equal(plan.wal.keepCount, 11 + 1);
  });

  test('dry-run planning never mutates its input and a plan with nothing to do is empty', () => {
    const backups = Object.freeze([backup(10, 1)]);
    const plan = planRetention(input({ kind: 'retain', count: 3 }, backups as BackupDescriptor[], range(10, 12)));
    assert.equal(plan.delete.length + plan.wal.delete.length + plan.deleteIncomplete.length + plan.deleteTemp.length, 0);
  });

  test('no complete backup: no WAL is deleted at all', () => {
    const plan = planRetention(input({ kind: 'garbage' }, [], range(1, 10)));
    assert.equal(plan.wal.floor, undefined);
    assert.equal(plan.wal.delete.length, 0);
  });

  test('before <name> deletes older non-permanent backups and keeps the named one and newer', () => {
    const bs = [backup(10, 1), backup(20, 2, { permanent: true }), backup(30, 3), backup(40, 4), backup(50, 5)];
    const plan = planRetention(input({ kind: 'before-backup', name: bs[3]!.name }, bs));
    assert.deepEqual(names(plan.delete), [bs[0]!.name, bs[2]!.name]);
    assert.throws(() => planRetention(input({ kind: 'before-backup', name: 'nope' }, bs)), code(ExitCode.refused));
  });

  test('before <time> keeps the newest backup that ended by then, so that time stays restorable', () => {
    const bs = [backup(10, 1), backup(20, 2), backup(30, 3), backup(40, 4)];
    // b at hour 2 ended at 2:10; the time is 2:30 -> keep it, delete only hour 1.
    const plan = planRetention(input({ kind: 'before-time', time: new Date(t0 + 2.5 * hour) }, bs));
    assert.deepEqual(names(plan.delete), [bs[0]!.name]);
    // A time before every backup's end deletes nothing.
    assert.equal(planRetention(input({ kind: 'before-time', time: new Date(t0) }, bs)).delete.length, 0);
    // A time after all of them still keeps the newest.
    assert.deepEqual(names(planRetention(input({ kind: 'before-time', time: new Date(t0 + 100 * hour) }, bs)).keep), [bs[3]!.name]);
  });

  test('retain 0 is a usage error', () => {
    assert.throws(() => planRetention(input({ kind: 'retain', count: 0 }, [])), code(ExitCode.usage));
  });

  test('kept deltas keep their parent chain', () => {
    const full = backup(10, 1);
    const d1 = backup(20, 2, { name: 'd1', parent: full.name });
    const d2 = backup(30, 3, { name: 'd2', parent: 'd1' });
    const plan = planRetention(input({ kind: 'retain', count: 1 }, [full, d1, d2], range(5, 35)));
    assert.equal(plan.delete.length, 0);
    assert.match(plan.keep[0]!.reason, /parent of kept delta d2/);
    assert.equal(plan.wal.floor?.segNo, 10n);
  });

  test('garbage deletes only incomplete backups past the safety age, stale temp files and WAL below the oldest complete backup', () => {
    const now = new Date(t0 + 100 * hour);
    const p = backup(10, 1, { permanent: true });
    const b = backup(20, 2);
    const old = { name: `base_${segmentFileName(1, 15n, seg)}`, modified: new Date(now.getTime() - 7 * hour), bytes: 50, objects: 2 };
    const young = { name: `base_${segmentFileName(1, 8n, seg)}`, modified: new Date(now.getTime() - 1 * hour), bytes: 50, objects: 1 };
    const marked = { name: 'other', modified: new Date(0), bytes: 1, objects: 1, permanentMark: true };
    const temp = [
      { path: '/r/wal/.tmp.a', size: 5, modified: new Date(now.getTime() - 7 * hour) },
      { path: '/r/wal/.tmp.b', size: 5, modified: new Date(now.getTime() - 60_000) },
    ];
    const plan = planRetention(input({ kind: 'garbage' }, [p, b], range(5, 25), { now, incomplete: [old, young, marked], temp }));
    assert.equal(plan.delete.length, 0);
    assert.deepEqual(names(plan.deleteIncomplete), [old.name]);
    assert.deepEqual(names(plan.keepIncomplete).sort(), [young.name, 'other'].sort());
    // The young incomplete backup (maybe a backup-push in progress) starts at 8: it lowers the floor.
    assert.equal(plan.wal.floor?.segNo, 8n);
    assert.deepEqual(plan.wal.delete.map(segNoOf), [5n, 6n, 7n]);
    assert.deepEqual(plan.deleteTemp.map((t) => t.path), ['/r/wal/.tmp.a']);
    // Without the young one, garbage keeps from the oldest complete backup, permanent or not.
    const plan2 = planRetention(input({ kind: 'garbage' }, [p, b], range(5, 25), { now }));
    assert.equal(plan2.wal.floor?.segNo, 10n);
  });

  test('startSegmentOfName reads base_<segment> names, deltas included', () => {
    assert.deepEqual(startSegmentOfName('base_000000020000000100000003', seg), { timeline: 2, segNo: 256n + 3n });
    assert.deepEqual(startSegmentOfName('base_000000010000000000000003_D_base_000000010000000000000001', seg), { timeline: 1, segNo: 3n });
    assert.equal(startSegmentOfName('custom', seg), undefined);
  });

  test('parseDuration and parseTime', () => {
    assert.equal(parseDuration('6h'), 6 * hour);
    assert.equal(parseDuration('90'), 90_000);
    assert.equal(parseDuration('2d'), 48 * hour);
    assert.ok(Number.isNaN(parseDuration('soon')));
    assert.equal(parseTime('2026-11-27 14:05:00+00')?.toISOString(), '2026-11-27T14:05:00.000Z');
    assert.equal(parseTime('2026-11-27T14:05:00Z')?.toISOString(), '2026-11-27T14:05:00.000Z');
    assert.equal(parseTime('base_000000010000000000000003'), undefined);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties over random repositories
// ---------------------------------------------------------------------------------------------

const arbRepo = fc
  .record({
    backups: fc.array(
      fc.record({
        startSeg: fc.integer({ min: 2, max: 200 }),
        len: fc.integer({ min: 0, max: 3 }),
        hour: fc.integer({ min: 0, max: 500 }),
        timeline: fc.integer({ min: 1, max: 3 }),
        permanent: fc.boolean(),
      }),
      { maxLength: 10 },
    ),
    walFrom: fc.integer({ min: 0, max: 50 }),
    rule: fc.oneof(
      fc.record({ kind: fc.constant('retain' as const), count: fc.integer({ min: 1, max: 5 }) }),
      fc.record({ kind: fc.constant('garbage' as const) }),
      fc.record({ kind: fc.constant('before-time' as const), time: fc.integer({ min: 0, max: 520 }).map((h) => new Date(t0 + h * hour)) }),
    ),
    seed: fc.integer(),
  })
  .map(({ backups, walFrom, rule, seed }) => {
    const list = backups.map((b, i) => backup(b.startSeg, b.hour, { name: `b${i}`, timeline: b.timeline, permanent: b.permanent }, b.len));
    const wal: WalObject[] = [history(2), history(3)];
    for (let tl = 1; tl <= 3; tl++) for (let s = walFrom; s <= 210; s += tl) wal.push(walFile(tl, s));
    // Shuffle deterministically: the plan must not depend on input order.
    const shuffled = [...list].sort((a, b) => ((a.name.charCodeAt(1) * 7919 + seed) % 13) - ((b.name.charCodeAt(1) * 7919 + seed) % 13));
    return { list, shuffled, wal, rule };
  });

describe('planRetention properties', () => {
  test('never deletes a permanent backup, the newest backup, a .history file, or WAL a kept backup needs', () => {
    fc.assert(
      fc.property(arbRepo, ({ list, wal, rule }) => {
        const plan = planRetention(input(rule, list, wal));
        const deleted = new Set(plan.delete.map((d) => d.backup.name));
        const newest = [...list].sort(compareBackups).at(-1);
        for (const b of list) if (b.permanent) assert.ok(!deleted.has(b.name), 'permanent deleted');
        if (newest) assert.ok(!deleted.has(newest.name), 'newest deleted');
        assert.equal(plan.keep.length + plan.delete.length, list.length);
        const gone = plan.wal.delete;
        assert.ok(gone.every((w) => w.kind !== 'history'));
        const kept = plan.keep.map((k) => k.backup);
        for (const w of gone) {
          const s = segNoOf(w);
          for (const b of kept) {
            const start = b.startLsn / BigInt(seg);
            const stop = b.stopLsn / BigInt(seg);
            assert.ok(!(s >= start && s <= stop), `${w.name} deleted inside kept ${b.name}'s own range`);
            if (!b.permanent || rule.kind === 'garbage') assert.ok(s < start, `${w.name} deleted at or after the start of kept ${b.name}`);
          }
        }
        if (rule.kind === 'garbage') assert.equal(plan.delete.length, 0);
        if (rule.kind === 'retain') {
          const regular = list.filter((b) => !b.permanent).length;
          assert.equal(plan.keep.filter((k) => !k.backup.permanent).length, Math.min(regular, rule.count));
        }
      }),
      { numRuns: 300 },
    );
  });

  test('the plan does not depend on the order backups are listed in', () => {
    fc.assert(
      fc.property(arbRepo, ({ list, shuffled, wal, rule }) => {
        const a = planRetention(input(rule, list, wal));
        const b = planRetention(input(rule, shuffled, [...wal].reverse()));
        assert.deepEqual(names(a.delete), names(b.delete));
        assert.deepEqual(a.wal.delete.map((w) => w.name), b.wal.delete.map((w) => w.name));
      }),
      { numRuns: 200 },
    );
  });

  test('WAL requirements are what a later wal-verify checks: after applying a plan, planning again deletes nothing more', () => {
    fc.assert(
      fc.property(arbRepo, ({ list, wal, rule }) => {
        const plan = planRetention(input(rule, list, wal));
        const goneWal = new Set(plan.wal.delete.map((w) => w.name));
        const keptBackups = plan.keep.map((k) => k.backup);
        const again = planRetention(input(rule.kind === 'retain' ? rule : { kind: 'retain', count: 100 }, keptBackups, wal.filter((w) => !goneWal.has(w.name))));
        if (rule.kind !== 'garbage') assert.equal(again.wal.delete.length, 0, 'retention is idempotent');
        const req = walRequirements(keptBackups, { segmentSize: seg, floorFrom: 'regular' });
        const remaining = new Set(wal.filter((w) => !goneWal.has(w.name)).map((w) => w.name));
        // Everything the requirements name as needed (within what was archived) is still there.
        for (const w of wal) {
          if (w.kind !== 'segment') continue;
          const s = segNoOf(w);
          const needed = (req.floor && s >= req.floor.segNo) || req.pinned.some((p) => s >= p.from && s <= p.to);
          if (needed) assert.ok(remaining.has(w.name), `${w.name} needed but deleted`);
        }
        assert.ok(parseWalFileName(wal[0]!.name));
      }),
      { numRuns: 200 },
    );
  });
});
