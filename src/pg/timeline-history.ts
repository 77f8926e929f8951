import { parseLsn } from './wal-names.ts';

/**
 * A timeline history file (<TLI>.history): one line per ancestor timeline, "parentTLI<TAB>switchpoint<TAB>reason",
 * where switchpoint is the LSN at which the next timeline branched off. Comments (#) and blank lines are skipped.
 */
export interface TimelineHistoryEntry {
  timeline: number;
  /** First LSN that is no longer on this timeline. */
  switchpoint: bigint;
  reason: string;
}

export function parseTimelineHistory(text: string, ofTimeline: number): TimelineHistoryEntry[] {
  const entries: TimelineHistoryEntry[] = [];
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\d+)\s+([0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8})(?:\s+(.*))?$/.exec(line);
    if (!m) throw new Error(`${timelineHex(ofTimeline)}.history line ${index + 1}: not "timeline switchpoint reason": ${JSON.stringify(raw)}`);
    const timeline = Number(m[1]);
    const switchpoint = parseLsn(m[2]!);
    const previous = entries.at(-1);
    if (previous && (timeline <= previous.timeline || switchpoint < previous.switchpoint)) {
      throw new Error(`${timelineHex(ofTimeline)}.history line ${index + 1}: timelines and switchpoints must increase`);
    }
    if (timeline >= ofTimeline) throw new Error(`${timelineHex(ofTimeline)}.history line ${index + 1}: ancestor timeline ${timeline} is not below ${ofTimeline}`);
    entries.push({ timeline, switchpoint, reason: m[3] ?? '' });
  }
  return entries;
}

/** The segment-by-segment view of a timeline's lineage: which timeline owns WAL from which LSN. */
export interface TimelineSpan {
  timeline: number;
  /** First LSN on this timeline (0 for the first). */
  begin: bigint;
  /** First LSN past this timeline (undefined: open-ended, the target timeline). */
  end: bigint | undefined;
}

/** The ancestry of `timeline`, oldest first, ending with `timeline` itself. */
export function timelineSpans(timeline: number, history: readonly TimelineHistoryEntry[]): TimelineSpan[] {
  const spans: TimelineSpan[] = [];
  let begin = 0n;
  for (const entry of history) {
    spans.push({ timeline: entry.timeline, begin, end: entry.switchpoint });
    begin = entry.switchpoint;
  }
  spans.push({ timeline, begin, end: undefined });
  return spans;
}

export const timelineHex = (timeline: number) => timeline.toString(16).toUpperCase().padStart(8, '0');
export const historyFileName = (timeline: number) => `${timelineHex(timeline)}.history`;
