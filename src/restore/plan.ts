import { refusedError } from '../errors.ts';
import { log } from '../log.ts';
import type { BackupSummary } from '../backup/manifest.ts';
import { formatLsn, parseLsn, segmentFileName, segmentNumber, segmentOfLsn } from '../pg/wal-names.ts';
import { timelineSpans, type TimelineSpan } from '../pg/timeline-history.ts';
import type { ArchiveIndex } from './archive.ts';
import { describeTarget, type RecoveryTarget, type TargetTimeline } from './target.ts';

export interface RestorePlan {
  backup: BackupSummary;
  /** The timeline recovery follows (recovery_target_timeline resolved as PostgreSQL will). */
  timeline: number;
  /** The archived WAL checked: first and last segment. */
  firstSegment: string;
  lastSegment: string;
}

export interface PlanOptions {
  target: RecoveryTarget;
  timeline: TargetTimeline;
  /** --backup: use this backup instead of choosing one. */
  backup?: string | undefined;
  standby: boolean;
  /** The repository's system identifier (walship.json): a backup of another cluster is refused. */
  systemIdentifier?: string | undefined;
}

/**
 * Choose the newest backup that ends before the target and prove the archive can take it there:
 * the backup lies on the history of the target timeline, and every WAL segment from the backup's
 * start to the target (for targets walship cannot place in WAL: to the newest archived segment) is
 * archived on the right timeline. Refuses (exit 3) with the reason otherwise.
 */
export async function planRestore(backups: readonly BackupSummary[], archive: ArchiveIndex, options: PlanOptions): Promise<RestorePlan> {
  const { target } = options;
  if (backups.length === 0) throw refusedError('the repository holds no complete backup to restore from');
  let candidates = [...backups].reverse();
  if (options.backup !== undefined) {
    candidates = candidates.filter((b) => b.name === options.backup);
    if (candidates.length === 0) throw refusedError(`no complete backup named ${options.backup} (backup-list shows the backups)`);
  }
  const endsBefore = (b: BackupSummary) =>
    target.kind === 'time' ? Date.parse(b.stopTime) <= target.time.getTime() : target.kind === 'lsn' ? parseLsn(b.stopLsn) <= target.lsn : true;
  const eligible = candidates.filter(endsBefore);
  if (eligible.length === 0) {
    if (options.backup !== undefined) {
      const b = candidates[0]!;
      throw refusedError(`backup ${b.name} ends at ${b.stopTime} (LSN ${b.stopLsn}), after the target ${describeTarget(target)}: recovery cannot stop before a backup's end`);
    }
    const earliest = target.kind === 'lsn' ? [...backups].sort((a, b) => cmp(parseLsn(a.stopLsn), parseLsn(b.stopLsn)))[0]! : [...backups].sort((a, b) => Date.parse(a.stopTime) - Date.parse(b.stopTime))[0]!;
    throw refusedError(
      `no backup ends before the target ${describeTarget(target)}; the earliest restorable ${target.kind === 'lsn' ? `LSN is ${earliest.stopLsn}` : `time is ${earliest.stopTime}`} (the end of backup ${earliest.name})`,
    );
  }

  const reasons: string[] = [];
  for (const backup of eligible) {
    if (options.systemIdentifier !== undefined && backup.systemIdentifier !== options.systemIdentifier) {
      throw refusedError(
        `backup ${backup.name} is of database system ${backup.systemIdentifier}, but the repository belongs to ${options.systemIdentifier}; refusing to restore a backup of another cluster`,
      );
    }
    const timeline = options.timeline.kind === 'number' ? options.timeline.timeline : options.timeline.kind === 'current' ? backup.timeline : archive.latestTimeline(backup.timeline);
    let history = await archive.history(timeline);
    if (history === undefined) {
      if (timeline !== backup.timeline) {
        reasons.push(`timeline ${timeline} has no history file in the archive`);
        continue;
      }
      history = [];
    }
    const spans = timelineSpans(timeline, history);
    const own = spans.find((s) => s.timeline === backup.timeline);
    if (!own || (own.end !== undefined && parseLsn(backup.stopLsn) > own.end)) {
      reasons.push(`backup ${backup.name} (timeline ${backup.timeline}, ending at ${backup.stopLsn}) is not in the history of timeline ${timeline}`);
      continue;
    }
    return { backup, timeline, ...checkWal(backup, timeline, spans, archive, options) };
  }
  throw refusedError(`no backup can reach the target ${describeTarget(target)}: ${reasons.join('; ')} (--target-timeline chooses another timeline)`);
}

const cmp = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);

/** Every segment from the backup's start to the end the target needs must be archived. */
function checkWal(backup: BackupSummary, timeline: number, spans: TimelineSpan[], archive: ArchiveIndex, options: PlanOptions): { firstSegment: string; lastSegment: string } {
  const size = backup.walSegmentSize;
  const startSeg = segmentOfLsn(parseLsn(backup.startLsn), size);
  const stopSeg = segmentOfLsn(parseLsn(backup.stopLsn) - 1n, size);
  // As PostgreSQL picks files (XLogFileReadAnyTLI): a segment comes from the newest timeline of the history that has begun by then.
  const owner = (segNo: bigint) => [...spans].reverse().find((s) => segmentOfLsn(s.begin, size) <= segNo) ?? spans[0]!;
  const nameOf = (segNo: bigint) => segmentFileName(owner(segNo).timeline, segNo, size);

  let newest: bigint | undefined;
  for (const span of spans) {
    const top = archive.newestSegment(span.timeline, size);
    if (top === undefined) continue;
    const prefix = span.timeline.toString(16).toUpperCase().padStart(8, '0');
    for (const name of archive.segments) {
      if (!name.startsWith(prefix)) continue;
      const segNo = segmentNumber(name.slice(8), size);
      if (nameOf(segNo) === name && (newest === undefined || segNo > newest)) newest = segNo;
    }
  }

  const { target } = options;
  let endSeg: bigint;
  if (options.standby || target.kind === 'immediate') endSeg = stopSeg;
  else if (target.kind === 'lsn') endSeg = segmentOfLsn(target.lsn, size);
  else endSeg = newest !== undefined && newest > stopSeg ? newest : stopSeg;

  for (let segNo = startSeg; segNo <= endSeg; segNo++) {
    const name = nameOf(segNo);
    if (archive.segments.has(name)) continue;
    if (target.kind === 'lsn' && (newest === undefined || segNo > newest)) {
      throw refusedError(
        `the target LSN ${formatLsn(target.lsn)} is beyond the archived WAL: segment ${name} is not archived yet${newest === undefined ? '' : ` (newest archived on timeline ${timeline}: ${nameOf(newest)})`}`,
      );
    }
    const previous = segNo > startSeg ? nameOf(segNo - 1n) : undefined;
    const when = previous ? archive.modified.get(previous) : undefined;
    throw refusedError(
      `WAL segment ${name} is missing from the archive: backup ${backup.name} needs continuous WAL from ${nameOf(startSeg)} to ${nameOf(endSeg)} on timeline ${timeline}${
        previous ? `; the archive is continuous up to ${previous}${when ? ` (archived ${when.toISOString()})` : ''}` : ''
      }`,
    );
  }
  if (target.kind === 'time' && newest !== undefined) {
    const when = archive.modified.get(nameOf(newest));
    if (when && when.getTime() < target.time.getTime()) {
      log.warn('the newest archived WAL segment was archived before the target time; if the target lies in WAL not archived yet, PostgreSQL will stop with "recovery ended before configured recovery target was reached"', {
        segment: nameOf(newest),
        archived: when.toISOString(),
      });
    }
  }
  return { firstSegment: nameOf(startSeg), lastSegment: nameOf(endSeg) };
}
