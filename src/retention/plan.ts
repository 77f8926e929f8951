/**
 * Retention as a pure plan (no storage access): given the complete backups (from their
 * manifests), the incomplete ones, the archived WAL and stale temporary files, which objects a
 * `delete retain N | before <name|time> | garbage` removes, which it keeps, and why.
 *
 * The rules, so retention cannot go wrong silently:
 * - Backups are ordered by their own start time, then start LSN, then name (all from the
 *   manifest): never by object listing order or modification time.
 * - Permanent backups are never deleted and do not count towards `retain N`.
 * - The newest complete backup is never deleted, whatever the rule.
 * - A kept delta keeps its parent chain.
 * - WAL: a WAL file is deleted only when its segment is older than the "floor", the start segment
 *   of the oldest kept non-permanent backup (of the newest kept backup when all kept backups are
 *   permanent; of the oldest complete backup for `garbage`, which never narrows the recovery
 *   window), and it lies outside the [start, stop] segments of every kept backup older than the
 *   floor (permanent ones: restorable to their end). Segment numbers are LSN positions, so the
 *   floor holds on every timeline: WAL a kept backup needs from its start segment onward, across
 *   timeline switches, is always at or above it. An incomplete backup still within the safety
 *   age (a backup-push in progress) lowers the floor to its start segment too.
 * - .history files are never deleted; objects under wal/ that are not WAL names are never touched.
 * - Incomplete backups (no manifest) and stale temporary files are deleted only once older than
 *   the safety age (their newest object's modification time: the only clock they have), except
 *   the leftovers of an interrupted delete, which carry its tombstone.
 */
import { refusedError, usageError } from '../errors.ts';
import { segmentFileName, segmentNumber } from '../pg/wal-names.ts';
import type { ArchivedWalFile } from '../wal/inventory.ts';

/** What retention needs to know of a complete backup (from its manifest or summary). */
export interface BackupDescriptor {
  name: string;
  timeline: number;
  startLsn: bigint;
  stopLsn: bigint;
  startTime: Date;
  stopTime: Date;
  permanent: boolean;
  /** Delta backups: the backup they apply on top of. */
  parent?: string | undefined;
  /** Stored bytes of the backup's objects (for the report). */
  bytes: number;
}

/** A backups/<name>/ directory without manifest.json. */
export interface IncompleteBackup {
  name: string;
  /** Newest modification time among its objects. */
  modified: Date;
  bytes: number;
  objects: number;
  /** A permanent mark found on it (never deleted automatically). */
  permanentMark?: boolean | undefined;
  /** Left by an interrupted `delete` (its tombstone is there): garbage at once, whatever its age. */
  deleting?: boolean | undefined;
}

/** What the plan needs of an archived WAL file (the inventory's ArchivedWalFile, without its date). */
export type WalObject = Pick<ArchivedWalFile, 'name' | 'key' | 'kind' | 'timeline' | 'segmentId' | 'size'>;

/** A leftover temporary file of an interrupted write (file:// repositories). */
export interface TempObject {
  path: string;
  size: number;
  modified: Date;
}

export type RetentionRule =
  | { kind: 'retain'; count: number }
  | { kind: 'before-time'; time: Date }
  | { kind: 'before-backup'; name: string }
  | { kind: 'garbage' };

export interface PlanInput {
  rule: RetentionRule;
  backups: readonly BackupDescriptor[];
  incomplete?: readonly IncompleteBackup[] | undefined;
  wal?: readonly WalObject[] | undefined;
  temp?: readonly TempObject[] | undefined;
  /** wal_segment_size; required when there is WAL to plan. */
  segmentSize: number;
  now: Date;
  /** Minimum age of incomplete backups and temporary files before they are deleted. */
  garbageAgeMs: number;
}

export interface BackupDecision {
  backup: BackupDescriptor;
  reason: string;
}

export interface IncompleteDecision {
  backup: IncompleteBackup;
  reason: string;
}

/** Segments kept below the floor for one backup: [from, to] inclusive. */
export interface PinnedRange {
  backup: string;
  from: bigint;
  to: bigint;
  first: string;
  last: string;
}

export interface WalFloor {
  segNo: bigint;
  /** The segment file name on the floor backup's timeline. */
  name: string;
  /** Backup (or incomplete backup) that sets it. */
  backup: string;
  reason: string;
}

export interface WalPlan {
  /** Undefined: no complete backup, so no WAL is deleted. */
  floor: WalFloor | undefined;
  pinned: PinnedRange[];
  /** Ascending segment order (.backup and .partial files among them). */
  delete: WalObject[];
  keepCount: number;
  keepBytes: number;
}

export interface RetentionPlan {
  rule: RetentionRule;
  /** Oldest first. */
  keep: BackupDecision[];
  delete: BackupDecision[];
  keepIncomplete: IncompleteDecision[];
  deleteIncomplete: IncompleteDecision[];
  wal: WalPlan;
  deleteTemp: TempObject[];
  totals: { backups: number; incomplete: number; wal: number; temp: number; bytes: number };
}

export const defaultGarbageAgeMs = 6 * 3600 * 1000;

const compareBig = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);

/** Oldest first: start time, then start LSN, then name (all from the manifest). */
export function compareBackups(a: BackupDescriptor, b: BackupDescriptor): number {
  return a.startTime.getTime() - b.startTime.getTime() || compareBig(a.startLsn, b.startLsn) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

/** The start segment a backup name records (`base_<24 hex>...`), when it follows walship's naming. */
export function startSegmentOfName(name: string, segmentSize: number): { timeline: number; segNo: bigint } | undefined {
  const m = /^base_([0-9A-F]{8})([0-9A-F]{16})(?:_|$)/.exec(name);
  if (!m) return undefined;
  return { timeline: parseInt(m[1]!, 16), segNo: segmentNumber(m[2]!, segmentSize) };
}

export const segmentOfLsn = (lsn: bigint, segmentSize: number) => lsn / BigInt(segmentSize);

/**
 * The WAL a set of kept backups needs: everything from the floor onward, plus each older kept
 * backup's own [start, stop] segments. Shared by `delete` (what to keep) and `wal-verify` (what
 * must be there), so the two can never disagree.
 */
export function walRequirements(
  kept: readonly BackupDescriptor[],
  options: { segmentSize: number; floorFrom: 'regular' | 'any'; inProgress?: readonly IncompleteBackup[] | undefined },
): { floor: WalFloor | undefined; pinned: PinnedRange[] } {
  const { segmentSize } = options;
  const ordered = [...kept].sort(compareBackups);
  let candidates = options.floorFrom === 'any' ? ordered : ordered.filter((b) => !b.permanent);
  let why = options.floorFrom === 'any' ? 'oldest complete backup' : 'oldest kept non-permanent backup';
  if (candidates.length === 0 && ordered.length) {
    candidates = [ordered.at(-1)!];
    why = 'newest kept backup (all kept backups are permanent)';
  }
  let floor: WalFloor | undefined;
  for (const b of candidates) {
    const segNo = segmentOfLsn(b.startLsn, segmentSize);
    if (!floor || segNo < floor.segNo) floor = { segNo, name: segmentFileName(b.timeline, segNo, segmentSize), backup: b.name, reason: `start of ${b.name}, the ${why}` };
  }
  for (const inc of options.inProgress ?? []) {
    const start = startSegmentOfName(inc.name, segmentSize);
    if (start && (!floor || start.segNo < floor.segNo)) {
      floor = { segNo: start.segNo, name: segmentFileName(start.timeline, start.segNo, segmentSize), backup: inc.name, reason: `start of ${inc.name}, a backup that may still be in progress` };
    }
  }
  const pinned: PinnedRange[] = [];
  if (floor) {
    for (const b of ordered) {
      const from = segmentOfLsn(b.startLsn, segmentSize);
      if (from >= floor.segNo) continue;
      const to = segmentOfLsn(b.stopLsn, segmentSize);
      pinned.push({ backup: b.name, from, to, first: segmentFileName(b.timeline, from, segmentSize), last: segmentFileName(b.timeline, to, segmentSize) });
    }
  }
  return { floor, pinned };
}

/** Decide what `delete <rule>` removes. Throws a usage/refused error for an impossible rule. */
export function planRetention(input: PlanInput): RetentionPlan {
  const { rule, segmentSize } = input;
  const ordered = [...input.backups].sort(compareBackups);
  const names = new Set(ordered.map((b) => b.name));
  const decisions = new Map<string, { keep: boolean; reason: string }>();
  const newest = ordered.at(-1);

  if (rule.kind === 'retain' && (!Number.isInteger(rule.count) || rule.count < 1)) {
    throw usageError(`retain ${rule.count}: keep at least one backup (retain N with N ≥ 1)`);
  }
  let anchor: BackupDescriptor | undefined;
  if (rule.kind === 'before-backup') {
    anchor = ordered.find((b) => b.name === rule.name);
    if (!anchor) throw refusedError(`no complete backup named ${rule.name} (backup-list shows the backups); nothing deleted`);
  }
  if (rule.kind === 'before-time') {
    // Keep what restoring to the given time needs: the newest non-permanent backup that ended by then.
    anchor = ordered.filter((b) => !b.permanent && b.stopTime.getTime() <= rule.time.getTime()).at(-1);
  }

  const regular = ordered.filter((b) => !b.permanent);
  const retained = rule.kind === 'retain' ? new Set(regular.slice(-rule.count).map((b) => b.name)) : undefined;
  const anchorIndex = anchor ? ordered.indexOf(anchor) : -1;
  for (const [index, b] of ordered.entries()) {
    let d: { keep: boolean; reason: string };
    if (b.permanent) d = { keep: true, reason: 'permanent' };
    else if (b === newest) d = { keep: true, reason: 'newest backup' };
    else if (rule.kind === 'garbage') d = { keep: true, reason: 'complete backup (garbage deletes only incomplete ones)' };
    else if (rule.kind === 'retain') {
      d = retained!.has(b.name) ? { keep: true, reason: `one of the ${rule.count} newest` } : { keep: false, reason: `older than the ${rule.count} newest` };
    } else if (rule.kind === 'before-backup') {
      d = index < anchorIndex ? { keep: false, reason: `older than ${anchor!.name}` } : { keep: true, reason: b === anchor ? 'named backup' : `newer than ${anchor!.name}` };
    } else {
      const when = rule.time.toISOString();
      if (!anchor) d = { keep: true, reason: `no non-permanent backup ended by ${when}, so none is older than needed` };
      else if (b === anchor) d = { keep: true, reason: `newest backup ended by ${when}: restoring to that time needs it` };
      else d = index < anchorIndex ? { keep: false, reason: `older than ${anchor.name}, the newest backup ended by ${when}` } : { keep: true, reason: `newer than ${when}` };
    }
    decisions.set(b.name, d);
  }
  // A kept delta keeps its whole parent chain.
  for (const b of ordered) {
    if (!decisions.get(b.name)!.keep) continue;
    let child = b;
    const seen = new Set<string>([b.name]);
    while (child.parent && names.has(child.parent) && !seen.has(child.parent)) {
      seen.add(child.parent);
      const parent = ordered.find((p) => p.name === child.parent)!;
      const pd = decisions.get(parent.name)!;
      if (!pd.keep) decisions.set(parent.name, { keep: true, reason: `parent of kept delta ${b.name}` });
      child = parent;
    }
  }

  const keep: BackupDecision[] = [];
  const del: BackupDecision[] = [];
  for (const b of ordered) {
    const d = decisions.get(b.name)!;
    (d.keep ? keep : del).push({ backup: b, reason: d.reason });
  }

  // Incomplete backups: only those older than the safety age go; young ones may be a backup-push in progress.
  const now = input.now.getTime();
  const keepIncomplete: IncompleteDecision[] = [];
  const deleteIncomplete: IncompleteDecision[] = [];
  for (const inc of [...(input.incomplete ?? [])].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (names.has(inc.name)) continue;
    const age = now - inc.modified.getTime();
    if (inc.permanentMark) keepIncomplete.push({ backup: inc, reason: 'no manifest, but marked permanent: left for you to inspect' });
    else if (inc.deleting) deleteIncomplete.push({ backup: inc, reason: 'left by an interrupted delete' });
    else if (age >= input.garbageAgeMs) deleteIncomplete.push({ backup: inc, reason: `no manifest, untouched for ${formatAge(age)}: an interrupted backup-push or delete` });
    else keepIncomplete.push({ backup: inc, reason: `no manifest yet, modified ${formatAge(Math.max(0, age))} ago: may be a backup-push in progress` });
  }

  const requirements = walRequirements(
    keep.map((k) => k.backup),
    { segmentSize, floorFrom: rule.kind === 'garbage' ? 'any' : 'regular', inProgress: keepIncomplete.map((k) => k.backup) },
  );
  const wal = planWal(input.wal ?? [], requirements, segmentSize);

  const deleteTemp = [...(input.temp ?? [])].filter((t) => now - t.modified.getTime() >= input.garbageAgeMs).sort((a, b) => (a.path < b.path ? -1 : 1));
  const bytes =
    del.reduce((s, d) => s + d.backup.bytes, 0) +
    deleteIncomplete.reduce((s, d) => s + d.backup.bytes, 0) +
    wal.delete.reduce((s, w) => s + w.size, 0) +
    deleteTemp.reduce((s, t) => s + t.size, 0);
  return {
    rule,
    keep,
    delete: del,
    keepIncomplete,
    deleteIncomplete,
    wal,
    deleteTemp,
    totals: { backups: del.length, incomplete: deleteIncomplete.length, wal: wal.delete.length, temp: deleteTemp.length, bytes },
  };
}

function planWal(files: readonly WalObject[], req: { floor: WalFloor | undefined; pinned: PinnedRange[] }, segmentSize: number): WalPlan {
  const del: { file: WalObject; segNo: bigint }[] = [];
  let keepCount = 0;
  let keepBytes = 0;
  for (const file of files) {
    let remove = false;
    if (req.floor && file.kind !== 'history' && file.segmentId !== undefined) {
      const segNo = segmentNumber(file.segmentId, segmentSize);
      remove = segNo < req.floor.segNo && !req.pinned.some((p) => segNo >= p.from && segNo <= p.to);
      if (remove) del.push({ file, segNo });
    }
    if (!remove) {
      keepCount++;
      keepBytes += file.size;
    }
  }
  del.sort((a, b) => compareBig(a.segNo, b.segNo) || a.file.timeline - b.file.timeline || (a.file.name < b.file.name ? -1 : 1));
  return { floor: req.floor, pinned: req.pinned, delete: del.map((d) => d.file), keepCount, keepBytes };
}

export function formatAge(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min`;
  if (s < 2 * 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} days`;
}

/** Parse a duration: seconds, or with a unit (30s, 15m, 6h, 2d). */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') return value * 1000;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*$/i.exec(value);
  if (!m) return Number.NaN;
  const scale = { s: 1, m: 60, min: 60, h: 3600, d: 86400 }[(m[2] ?? 's').toLowerCase() as 's' | 'm' | 'min' | 'h' | 'd'];
  return Math.round(Number(m[1]) * scale * 1000);
}

/** Parse a `before` time: ISO 8601, or PostgreSQL's '2026-11-27 14:05:00+00'. Undefined when it is not a time. */
export function parseTime(value: string): Date | undefined {
  const trimmed = value.trim();
  if (!/^\d{4}-\d\d-\d\d/.test(trimmed)) return undefined;
  const normalized = trimmed.replace(/^(\d{4}-\d\d-\d\d) (\d)/, '$1T$2').replace(/([+-]\d\d)$/, '$1:00');
  const t = Date.parse(normalized);
  return Number.isNaN(t) ? undefined : new Date(t);
}
