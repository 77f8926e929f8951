/**
 * Retention for logical dumps, as a pure plan (no storage access): given the dumps' manifests,
 * which to delete and which to keep, and why. The `delete ... --dumps` command loads the manifests
 * (listDumps + scanDumps in manifest.ts), prints the plan, and only with --confirm hands
 * `plan.delete` to deleteDumps() (delete.ts).
 *
 * Safety rules (the same as for base backups):
 * - order comes from each manifest's own times (started: the moment pg_dump's snapshot was taken,
 *   then finished, then name), never from object names or storage modification dates; `before`
 *   compares the start time too, as base backup retention does;
 * - a plan is a dry run unless `confirm` is set;
 * - permanent dumps are never deleted (and do not count towards `retain`);
 * - the newest dump of each series is never deleted, whatever the rule;
 * - a dump without a manifest (in progress, or left by a killed dump-push) is deleted only once it
 *   is older than a grace period, so a running dump-push is never disturbed.
 *
 * Series: dumps of one database (dump-push --dbname X) form one series; cluster dumps
 * (dump-push --all) form another. `retain N` keeps the newest N of every series.
 */
import { usageError } from '../errors.ts';
import type { RetentionRule } from '../retention/plan.ts';

/** The manifest fields retention reads (a DumpManifest satisfies it). */
export interface RetentionDump {
  name: string;
  kind: 'database' | 'cluster';
  database?: string | undefined;
  started: string;
  finished: string;
  /** Pinned: never deleted. (No command sets it yet; honoured so that one can.) */
  permanent?: boolean | undefined;
}

/** A dump directory without manifest.json: its name and newest object's modification time. */
export interface IncompleteDump {
  name: string;
  modified: Date;
}

/**
 * The same rule values as base backup retention (src/retention/plan.ts), so `delete` parses one
 * rule for both: retain N keeps the newest N (N ≥ 1) of every series; before-time deletes dumps
 * that started before the time; before-backup names a dump, which is kept, and deletes those that
 * started before it; garbage deletes only incomplete dumps past the grace period.
 */
export type DumpRetentionRule = RetentionRule;

export interface RetentionOptions {
  rule: DumpRetentionRule;
  /** Only plan within the series of this database (kind database dumps of it). Default: every series. */
  database?: string | undefined;
  /** Actually delete; without it the plan is a dry run. */
  confirm?: boolean | undefined;
  /** Dump directories without a manifest. */
  incomplete?: readonly IncompleteDump[] | undefined;
  /** How old an incomplete dump must be before it is deleted (a dump-push may still be writing it); default 6 hours. */
  garbageAgeMs?: number | undefined;
  /** "Now", for the grace period; default the current time. */
  now?: Date | undefined;
}

export interface RetentionDecision {
  name: string;
  /** 'cluster', 'database', or 'incomplete' (no manifest). */
  kind: RetentionDump['kind'] | 'incomplete';
  database?: string | undefined;
  /** Manifest start time (ISO 8601); for incomplete dumps their objects' newest modification time. */
  started: string;
  reason: string;
}

export interface RetentionPlan {
  /** True unless `confirm` was given: print the plan, delete nothing. */
  dryRun: boolean;
  /** Oldest first. */
  delete: RetentionDecision[];
  keep: RetentionDecision[];
}

export const defaultGarbageAgeMs = 6 * 3600 * 1000;

const seriesOf = (d: RetentionDump) => (d.kind === 'cluster' ? 'cluster' : `database ${d.database ?? '?'}`);

function timeOf(value: string, what: string): number {
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw usageError(`${what}: '${value}' is not a time`);
  return t;
}

/** Parse a `before` time: ISO 8601, or PostgreSQL's '2026-11-27 14:05:00+00'; the zone is required (no guessing of local time). */
export function parseRetentionTime(value: string): Date {
  const normalized = value.trim().replace(/^(\d{4}-\d\d-\d\d) (\d)/, '$1T$2').replace(/([+-]\d\d)$/, '$1:00');
  if (!/(Z|[+-]\d\d:?\d\d)$/i.test(normalized)) throw usageError(`'${value}' has no time zone (add Z or +00, e.g. 2026-11-27 14:05:00+00)`);
  const t = Date.parse(normalized);
  if (Number.isNaN(t)) throw usageError(`'${value}' is not a time (use ISO 8601, e.g. 2026-11-27T14:05:00Z)`);
  return new Date(t);
}

export function planDumpRetention(dumps: readonly RetentionDump[], options: RetentionOptions): RetentionPlan {
  const rule = options.rule;
  if (rule.kind === 'retain' && (!Number.isInteger(rule.count) || rule.count < 1)) {
    throw usageError(`retain ${rule.count}: keep at least 1 dump (retain N with N ≥ 1)`);
  }
  const sorted = dumps
    .map((d) => ({ d, finished: timeOf(d.finished, `dump ${d.name} finished`), started: timeOf(d.started, `dump ${d.name} started`) }))
    .sort((a, b) => a.started - b.started || a.finished - b.finished || (a.d.name < b.d.name ? -1 : a.d.name > b.d.name ? 1 : 0));

  let cutoff: number | undefined;
  if (rule.kind === 'before-time') {
    cutoff = rule.time.getTime();
    if (Number.isNaN(cutoff)) throw usageError('before: not a time');
  }
  if (rule.kind === 'before-backup') {
    const named = sorted.find((s) => s.d.name === rule.name);
    if (!named) throw usageError(`no complete dump named ${rule.name}`);
    cutoff = named.started;
  }

  const decision = (d: RetentionDump, reason: string): RetentionDecision => ({ name: d.name, kind: d.kind, database: d.database, started: d.started, reason });
  const plan: RetentionPlan = { dryRun: !options.confirm, delete: [], keep: [] };

  const series = new Map<string, typeof sorted>();
  for (const s of sorted) {
    if (options.database !== undefined && !(s.d.kind === 'database' && s.d.database === options.database)) {
      plan.keep.push(decision(s.d, `not a dump of database ${options.database}`));
      continue;
    }
    const key = seriesOf(s.d);
    series.set(key, [...(series.get(key) ?? []), s]);
  }
  for (const [key, members] of series) {
    const newest = members.at(-1)!;
    let kept = 0;
    // Newest first, so "the newest N" is counted in order.
    for (const s of [...members].reverse()) {
      const d = s.d;
      if (d.permanent) {
        plan.keep.push(decision(d, 'permanent'));
      } else if (s === newest) {
        kept++;
        plan.keep.push(decision(d, `newest dump of ${key}`));
      } else if (rule.kind === 'garbage') {
        plan.keep.push(decision(d, 'complete (garbage removes only incomplete dumps)'));
      } else if (rule.kind === 'retain') {
        if (kept < rule.count) {
          kept++;
          plan.keep.push(decision(d, `one of the ${rule.count} newest of ${key}`));
        } else {
          plan.delete.push(decision(d, `older than the ${rule.count} newest of ${key}`));
        }
      } else if (s.started < cutoff!) {
        plan.delete.push(decision(d, `started before ${new Date(cutoff!).toISOString()}`));
      } else {
        plan.keep.push(decision(d, `started at or after ${new Date(cutoff!).toISOString()}`));
      }
    }
  }

  if (options.database === undefined) {
    const now = (options.now ?? new Date()).getTime();
    const grace = options.garbageAgeMs ?? defaultGarbageAgeMs;
    const complete = new Set(dumps.map((d) => d.name));
    for (const inc of options.incomplete ?? []) {
      if (complete.has(inc.name)) continue;
      const entry: RetentionDecision = { name: inc.name, kind: 'incomplete', started: inc.modified.toISOString(), reason: '' };
      if (now - inc.modified.getTime() >= grace) plan.delete.push({ ...entry, reason: `no manifest for ${formatAge(now - inc.modified.getTime())}: an interrupted dump-push` });
      else plan.keep.push({ ...entry, reason: 'no manifest yet: may still be in progress' });
    }
  }

  const byTime = (a: RetentionDecision, b: RetentionDecision) => Date.parse(a.started) - Date.parse(b.started) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  plan.delete.sort(byTime);
  plan.keep.sort(byTime);
  return plan;
}

function formatAge(ms: number): string {
  const hours = ms / 3600_000;
  return hours >= 48 ? `${Math.floor(hours / 24)} days` : `${Math.floor(hours)} hours`;
}
