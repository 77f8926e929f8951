/**
 * Retention planning for logical dumps (src/dump/retention.ts): a pure function, so its safety
 * rules are checked exhaustively here, with examples and with fast-check properties.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ExitCode, WalshipError } from '../../src/errors.ts';
import { parseRetentionTime, planDumpRetention, type RetentionDump } from '../../src/dump/retention.ts';

const at = (minute: number) => new Date(Date.UTC(2026, 10, 27, 3, minute)).toISOString();

/** A dump of `database` (or a cluster dump when undefined) started at minute `m`; its name deliberately does not sort by time. */
function dump(m: number, database: string | undefined, extra: Partial<RetentionDump> = {}): RetentionDump {
  return {
    name: `z${String(1000 - m).padStart(4, '0')}_${database ?? 'all'}`,
    kind: database === undefined ? 'cluster' : 'database',
    database,
    started: at(m),
    finished: at(m + 1),
    ...extra,
  };
}

const names = (list: { name: string }[]) => list.map((d) => d.name);
const usage = (err: unknown) => err instanceof WalshipError && err.exitCode === ExitCode.usage;

describe('planDumpRetention', () => {
  test('is a dry run unless confirmed', () => {
    const dumps = [dump(1, 'app'), dump(2, 'app')];
    assert.equal(planDumpRetention(dumps, { rule: { kind: 'retain', count: 1 } }).dryRun, true);
    assert.equal(planDumpRetention(dumps, { rule: { kind: 'retain', count: 1 }, confirm: true }).dryRun, false);
    assert.deepEqual(names(planDumpRetention(dumps, { rule: { kind: 'retain', count: 1 } }).delete), [dumps[0]!.name]);
  });

  test('retain N keeps the newest N of every database and of the cluster dumps, by manifest time, not by name', () => {
    const dumps = [dump(5, 'app'), dump(1, 'app'), dump(3, 'app'), dump(2, 'crm'), dump(4, 'crm'), dump(6, undefined), dump(7, undefined), dump(8, undefined)];
    const plan = planDumpRetention(dumps, { rule: { kind: 'retain', count: 2 } });
    assert.deepEqual(names(plan.delete), [dump(1, 'app').name, dump(6, undefined).name]);
    assert.deepEqual(plan.delete.map((d) => d.kind), ['database', 'cluster']);
    assert.equal(plan.keep.length, 6);
    // oldest first in both lists
    assert.deepEqual(plan.keep.map((d) => d.started), [...plan.keep.map((d) => d.started)].sort());
  });

  test('ties in start time fall back to finish time, then name', () => {
    const a = { ...dump(5, 'app'), finished: at(6) };
    const b = { ...dump(5, 'app'), name: 'b', finished: at(7) };
    assert.deepEqual(names(planDumpRetention([b, a], { rule: { kind: 'retain', count: 1 } }).delete), [a.name]);
  });

  test('retain below 1 or not an integer is refused', () => {
    for (const retain of [0, -1, 1.5, Number.NaN]) {
      assert.throws(() => planDumpRetention([dump(1, 'app')], { rule: { kind: 'retain', count: retain } }), usage);
    }
  });

  test('before a time deletes dumps started earlier, but never the newest of a series', () => {
    const dumps = [dump(1, 'app'), dump(2, 'app'), dump(3, 'crm'), dump(9, 'app')];
    const plan = planDumpRetention(dumps, { rule: { kind: 'before-time', time: new Date(at(5)) } });
    assert.deepEqual(names(plan.delete), [dump(1, 'app').name, dump(2, 'app').name]);
    assert.match(plan.keep.find((d) => d.name === dump(3, 'crm').name)!.reason, /newest dump of database crm/);
    // a time after every dump still leaves one per series
    const all = planDumpRetention(dumps, { rule: { kind: 'before-time', time: parseRetentionTime('2099-01-01 00:00:00+00') } });
    assert.deepEqual(names(all.keep).sort(), [dump(3, 'crm').name, dump(9, 'app').name].sort());
  });

  test('before a named dump keeps that dump and deletes older ones', () => {
    const dumps = [dump(1, 'app'), dump(2, 'app'), dump(3, 'app'), dump(4, 'app')];
    const plan = planDumpRetention(dumps, { rule: { kind: 'before-backup', name: dump(3, 'app').name } });
    assert.deepEqual(names(plan.delete), [dump(1, 'app').name, dump(2, 'app').name]);
    assert.throws(() => planDumpRetention(dumps, { rule: { kind: 'before-backup', name: 'nope' } }), usage);
  });

  test('permanent dumps are kept and do not count towards retain', () => {
    const dumps = [dump(1, 'app', { permanent: true }), dump(2, 'app'), dump(3, 'app'), dump(4, 'app', { permanent: true })];
    const plan = planDumpRetention(dumps, { rule: { kind: 'retain', count: 1 } });
    assert.deepEqual(names(plan.delete), [dump(2, 'app').name]);
    assert.equal(plan.keep.find((d) => d.name === dump(1, 'app').name)!.reason, 'permanent');
  });

  test('a database filter plans only that database', () => {
    const dumps = [dump(1, 'app'), dump(2, 'app'), dump(3, 'crm'), dump(4, 'crm'), dump(5, undefined), dump(6, undefined)];
    const plan = planDumpRetention(dumps, { rule: { kind: 'retain', count: 1 }, database: 'crm', incomplete: [{ name: 'x', modified: new Date(0) }] });
    assert.deepEqual(names(plan.delete), [dump(3, 'crm').name]);
    assert.equal(plan.keep.length, 5);
  });

  test('incomplete dumps go only after the grace period', () => {
    const now = new Date(Date.UTC(2026, 10, 28));
    const plan = planDumpRetention([dump(1, 'app')], {
      rule: { kind: 'retain', count: 1 },
      now,
      incomplete: [
        { name: 'old', modified: new Date(now.getTime() - 7 * 3600_000) },
        { name: 'running', modified: new Date(now.getTime() - 60_000) },
        { name: dump(1, 'app').name, modified: new Date(0) }, // has a manifest after all: ignored
      ],
    });
    assert.deepEqual(names(plan.delete), ['old']);
    assert.equal(plan.delete[0]!.kind, 'incomplete');
    assert.deepEqual(names(plan.keep).sort(), [dump(1, 'app').name, 'running'].sort());
  });

  test('garbage deletes only incomplete dumps past the grace period', () => {
    const now = new Date(Date.UTC(2026, 10, 28));
    const dumps = [dump(1, 'app'), dump(2, 'app')];
    const plan = planDumpRetention(dumps, { rule: { kind: 'garbage' }, now, garbageAgeMs: 3600_000, incomplete: [{ name: 'stale', modified: new Date(now.getTime() - 2 * 3600_000) }] });
    assert.deepEqual(names(plan.delete), ['stale']);
    assert.equal(plan.keep.length, 2);
  });

  test('an unreadable manifest time stops the plan instead of guessing', () => {
    assert.throws(() => planDumpRetention([{ ...dump(1, 'app'), started: 'yesterday' }], { rule: { kind: 'retain', count: 1 } }), usage);
  });

  test('parseRetentionTime reads ISO 8601 and PostgreSQL-style times', () => {
    assert.equal(parseRetentionTime('2026-11-27 14:05:00+00').toISOString(), '2026-11-27T14:05:00.000Z');
    assert.equal(parseRetentionTime('2026-11-27T14:05:00+02:00').toISOString(), '2026-11-27T12:05:00.000Z');
    assert.throws(() => parseRetentionTime('soon'), usage);
    assert.throws(() => parseRetentionTime('2026-11-27 14:05:00'), /no time zone/);
  });

  test('properties: deletes and keeps partition the input; every series keeps its newest; retain keeps min(N, size)', () => {
    const arbDump = fc.record({
      m: fc.integer({ min: 0, max: 500 }),
      db: fc.constantFrom('app', 'crm', 'x y', undefined),
      permanent: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.uniqueArray(arbDump, { selector: (d) => `${d.m}`, maxLength: 30 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 0, max: 520 }), (specs, retain, cut) => {
        const dumps = specs.map((s) => dump(s.m, s.db, { permanent: s.permanent }));
        for (const rule of [{ kind: 'retain', count: retain } as const, { kind: 'before-time', time: new Date(at(cut)) } as const, { kind: 'garbage' } as const]) {
          const plan = planDumpRetention(dumps, { rule });
          assert.deepEqual([...names(plan.delete), ...names(plan.keep)].sort(), names(dumps).sort());
          const deleted = new Set(names(plan.delete));
          for (const d of dumps) if (d.permanent) assert.ok(!deleted.has(d.name));
          const bySeries = new Map<string, RetentionDump[]>();
          for (const d of dumps) bySeries.set(d.database ?? '--all', [...(bySeries.get(d.database ?? '--all') ?? []), d]);
          for (const members of bySeries.values()) {
            members.sort((a, b) => Date.parse(a.started) - Date.parse(b.started));
            assert.ok(!deleted.has(members.at(-1)!.name), 'newest of a series deleted');
            const impermanent = members.filter((d) => !d.permanent);
            if (rule.kind === 'retain') {
              const keptImpermanent = impermanent.filter((d) => !deleted.has(d.name));
              assert.equal(keptImpermanent.length, Math.min(retain, impermanent.length));
              // the kept ones are the newest ones
              assert.deepEqual(keptImpermanent, impermanent.slice(impermanent.length - keptImpermanent.length));
            } else if (rule.kind === 'garbage') {
              assert.equal(members.filter((d) => deleted.has(d.name)).length, 0);
            } else {
              for (const d of members) if (deleted.has(d.name)) assert.ok(Date.parse(d.started) < Date.parse(at(cut)));
            }
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
