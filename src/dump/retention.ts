/**
 * Retention for logical dumps, as a pure plan (no storage access): given the dumps' manifests,
 * which to delete and which to keep, and why. The `delete ... --dumps` command loads the manifests
 * (listDumps + scanDumps in manifest.ts), prints the plan, and only with --confirm hands
 * `plan.delete` to deleteDumps() (delete.ts).
 *
 * Safety rules (the same as for base backups):
 * - order comes from each manifest's own times (finished, then started, then name), never from
 *   object names or storage modification dates;
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

export type RetentionRule =
  /** Keep the newest N (N ≥ 1) of every series. */
  | { retain: number }
  /** Delete dumps that finished before this time (a Date, or an ISO 8601 / PostgreSQL-style time string). */
  | { before: Date | string }
  /** Delete dumps that finished before the named dump (which is kept). */
  | { beforeName: string };

export interface RetentionOptions {
  rule: RetentionRule;
  /** Only plan within the series of this database (kind database dumps of it). Default: every series. */
  database?: string | undefined;
  /** Actually delete; without it the plan is a dry run. */
  confirm?: boolean | undefined;
  /** Dump directories without a manifest. */
  incomplete?: readonly IncompleteDump[] | undefined;
  /** How old an incomplete dump must be before it is deleted; default 6 hours. */
  incompleteGraceMs?: number | undefined;
  /** "Now", for the grace period; default the current time. */
  now?: Date | undefined;
}

export interface RetentionDecision {
  name: string;
  /** 'cluster', 'database', or 'incomplete' (no manifest). */
  kind: RetentionDump['kind'] | 'incomplete';
  database?: string | undefined;
  /** Manifest finished time (ISO 8601); for incomplete dumps their objects' newest modification time. */
  finished: string;
  reason: string;
}

export interface RetentionPlan {
  /** True unless `confirm` was given: print the plan, delete nothing. */
  dryRun: boolean;
  /** Oldest first. */
  delete: RetentionDecision[];
  keep: RetentionDecision[];
}

export const defaultIncompleteGraceMs = 6 * 3600 * 1000;

const seriesOf = (d: RetentionDump) => (d.kind === 'cluster' ? 'cluster' : `database ${d.database ?? '?'}`);

function timeOf(value: string, what: string): number {
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw usageError(`${what}: '${value}' is not a time`);
  return t;
}

/** Parse a `before` time: ISO 8601, or PostgreSQL's '2026-11-27 14:05:00+00'. */
export function parseRetentionTime(value: string): Date {
  const normalized = value.trim().replace(/^(\d{4}-\d\d-\d\d) (\d)/, '$1T$2').replace(/([+-]\d\d)$/, '$1:00');
  const t = Date.parse(normalized);
  if (Number.isNaN(t)) throw usageError(`'${value}' is not a time (use ISO 8601, e.g. 2026-11-27T14:05:00Z)`);
  return new Date(t);
}

export function planDumpRetention(dumps: readonly RetentionDump[], options: RetentionOptions): RetentionPlan {
  const rule = options.rule;
  if ('retain' in rule && (!Number.isInteger(rule.retain) || rule.retain < 1)) {
    throw usageError(`retain ${rule.retain}: keep at least 1 dump (retain N with N ≥ 1)`);
  }
  const sorted = dumps
    .map((d) => ({ d, finished: timeOf(d.finished, `dump ${d.name} finished`), started: timeOf(d.started, `dump ${d.name} started`) }))
    .sort((a, b) => a.finished - b.finished || a.started - b.started || (a.d.name < b.d.name ? -1 : a.d.name > b.d.name ? 1 : 0));

  let cutoff: number | undefined;
  if ('before' in rule) cutoff = rule.before instanceof Date ? rule.before.getTime() : parseRetentionTime(rule.before).getTime();
  if ('beforeName' in rule) {
    const named = sorted.find((s) => s.d.name === rule.beforeName);
    if (!named) throw usageError(`no complete dump named ${rule.beforeName}`);
    cutoff = named.finished;
  }

  const decision = (d: RetentionDump, reason: string): RetentionDecision => ({ name: d.name, kind: d.kind, database: d.database, finished: d.finished, reason });
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
      } else if ('retain' in rule) {
        if (kept < rule.retain) {
          kept++;
          plan.keep.push(decision(d, `one of the ${rule.retain} newest of ${key}`));
        } else {
          plan.delete.push(decision(d, `older than the ${rule.retain} newest of ${key}`));
        }
      } else if (s.finished < cutoff!) {
        plan.delete.push(decision(d, `finished before ${new Date(cutoff!).toISOString()}`));
      } else {
        plan.keep.push(decision(d, `finished at or after ${new Date(cutoff!).toISOString()}`));
      }
    }
  }

  if (options.database === undefined) {
    const now = (options.now ?? new Date()).getTime();
    const grace = options.incompleteGraceMs ?? defaultIncompleteGraceMs;
    const complete = new Set(dumps.map((d) => d.name));
    for (const inc of options.incomplete ?? []) {
      if (complete.has(inc.name)) continue;
      const entry: RetentionDecision = { name: inc.name, kind: 'incomplete', finished: inc.modified.toISOString(), reason: '' };
      if (now - inc.modified.getTime() >= grace) plan.delete.push({ ...entry, reason: `no manifest for ${formatAge(now - inc.modified.getTime())}: an interrupted dump-push` });
      else plan.keep.push({ ...entry, reason: 'no manifest yet: may still be in progress' });
    }
  }

  const byTime = (a: RetentionDecision, b: RetentionDecision) => Date.parse(a.finished) - Date.parse(b.finished) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  plan.delete.sort(byTime);
  plan.keep.sort(byTime);
  return plan;
}

function formatAge(ms: number): string {
  const hours = ms / 3600_000;
  return hours >= 48 ? `${Math.floor(hours / 24)} days` : `${Math.floor(hours)} hours`;
}
