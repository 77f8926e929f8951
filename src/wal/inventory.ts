/**
 * What WAL the repository holds: every object under wal/, parsed by name, grouped per timeline,
 * with the gaps between archived segments, and the timeline lineage (.history files) needed to
 * follow WAL across promotions. Listing only: no object is read here except a .history file or
 * one segment's first page (to learn wal_segment_size when no backup records it).
 */
import { buffer } from 'node:stream/consumers';
import { decodeObject, type Encryption } from '../codec/codec.ts';
import { integrityError } from '../errors.ts';
import { historyFileName, parseTimelineHistory, timelineSpans, type TimelineHistoryEntry, type TimelineSpan } from '../pg/timeline-history.ts';
import { isValidSegmentSize, lsnOfSegment, parseWalFileName, segmentFileName, segmentNumber, type WalFileKind } from '../pg/wal-names.ts';
import { longHeaderSize, parseSegmentHeader } from '../pg/wal-page.ts';
import { keys } from '../repository.ts';
import type { Storage } from '../storage/storage.ts';

/** One object under wal/ whose name PostgreSQL could have archived. */
export interface ArchivedWalFile {
  name: string;
  key: string;
  kind: WalFileKind;
  timeline: number;
  /** Segment, .partial, .backup: the 16 hex digits after the timeline. */
  segmentId?: string | undefined;
  /** Stored bytes (compressed, encrypted). */
  size: number;
  modified: Date;
}

export interface WalListing {
  files: ArchivedWalFile[];
  /** Objects under wal/ that are not WAL file names (never touched by delete; reported). */
  foreign: { key: string; size: number }[];
}

/** List wal/: one pass over the listing, names parsed, nothing read. */
export async function listArchivedWal(storage: Storage): Promise<WalListing> {
  const files: ArchivedWalFile[] = [];
  const foreign: { key: string; size: number }[] = [];
  for await (const object of storage.list(keys.walPrefix)) {
    const name = object.key.slice(keys.walPrefix.length);
    const parsed = name.includes('/') ? undefined : parseWalFileName(name);
    if (!parsed) {
      foreign.push({ key: object.key, size: object.size });
      continue;
    }
    files.push({ name, key: object.key, kind: parsed.kind, timeline: parsed.timeline, segmentId: parsed.segmentId, size: object.size, modified: object.modified });
  }
  return { files, foreign };
}

/** A run of missing segments on one timeline, both ends inclusive. */
export interface SegmentGap {
  timeline: number;
  from: bigint;
  to: bigint;
  /** File names of the first and last missing segment. */
  first: string;
  last: string;
  count: bigint;
}

export interface TimelineInventory {
  timeline: number;
  /** Segment numbers archived, ascending (full segments only; .partial listed apart). */
  segments: bigint[];
  first: string | undefined;
  last: string | undefined;
  count: number;
  /** Stored bytes of every object of this timeline (segments, .partial, .backup). */
  bytes: number;
  /** Holes between the first and last archived segment. */
  gaps: SegmentGap[];
  partials: string[];
  backupLabels: string[];
  /** The timeline's .history file is archived (timeline 1 has none). */
  hasHistory: boolean;
}

export interface WalInventory {
  segmentSize: number;
  timelines: TimelineInventory[];
  /** Every .history file name. */
  histories: string[];
  files: ArchivedWalFile[];
  foreign: { key: string; size: number }[];
  bytes: number;
}

/** The segment number of a segment, .partial or .backup file; undefined for .history. */
export function segmentOf(file: { segmentId?: string | undefined }, segmentSize: number): bigint | undefined {
  return file.segmentId === undefined ? undefined : segmentNumber(file.segmentId, segmentSize);
}

/** Missing runs in an ascending list of segment numbers. */
export function findGaps(timeline: number, segments: readonly bigint[], segmentSize: number): SegmentGap[] {
  const gaps: SegmentGap[] = [];
  for (let i = 1; i < segments.length; i++) {
    const previous = segments[i - 1]!;
    const current = segments[i]!;
    if (current > previous + 1n) gaps.push(gap(timeline, previous + 1n, current - 1n, segmentSize));
  }
  return gaps;
}

export function gap(timeline: number, from: bigint, to: bigint, segmentSize: number): SegmentGap {
  return { timeline, from, to, first: segmentFileName(timeline, from, segmentSize), last: segmentFileName(timeline, to, segmentSize), count: to - from + 1n };
}

/** Group a listing per timeline, with gaps. */
export function buildInventory(listing: WalListing, segmentSize: number): WalInventory {
  const byTimeline = new Map<number, { segments: bigint[]; bytes: number; partials: string[]; backupLabels: string[]; hasHistory: boolean }>();
  const entry = (timeline: number) => {
    let e = byTimeline.get(timeline);
    if (!e) byTimeline.set(timeline, (e = { segments: [], bytes: 0, partials: [], backupLabels: [], hasHistory: false }));
    return e;
  };
  const histories: string[] = [];
  let bytes = 0;
  for (const file of listing.files) {
    bytes += file.size;
    const e = entry(file.timeline);
    if (file.kind === 'history') {
      e.hasHistory = true;
      histories.push(file.name);
      continue;
    }
    e.bytes += file.size;
    if (file.kind === 'segment') e.segments.push(segmentNumber(file.segmentId!, segmentSize));
    else if (file.kind === 'partial') e.partials.push(file.name);
    else e.backupLabels.push(file.name);
  }
  const timelines: TimelineInventory[] = [...byTimeline.entries()]
    .sort(([a], [b]) => a - b)
    .map(([timeline, e]) => {
      const segments = [...new Set(e.segments)].sort(compareBig);
      return {
        timeline,
        segments,
        first: segments.length ? segmentFileName(timeline, segments[0]!, segmentSize) : undefined,
        last: segments.length ? segmentFileName(timeline, segments.at(-1)!, segmentSize) : undefined,
        count: segments.length,
        bytes: e.bytes,
        gaps: findGaps(timeline, segments, segmentSize),
        partials: e.partials.sort(),
        backupLabels: e.backupLabels.sort(),
        hasHistory: e.hasHistory,
      };
    });
  for (const f of listing.foreign) bytes += f.size;
  return { segmentSize, timelines, histories: histories.sort(), files: listing.files, foreign: listing.foreign, bytes };
}

export const compareBig = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * wal_segment_size of the archived WAL: given by the caller (from a backup manifest) when known,
 * else read from the first page of the newest archived segment.
 */
export async function detectSegmentSize(
  storage: Storage,
  listing: WalListing,
  encryption: Encryption | undefined,
  known?: number | undefined,
): Promise<number | undefined> {
  if (known !== undefined && isValidSegmentSize(known)) return known;
  const segments = listing.files.filter((f) => f.kind === 'segment');
  // Names sort by timeline then position; the newest segment of the highest timeline is the likeliest to be healthy.
  segments.sort((a, b) => (a.name < b.name ? 1 : a.name > b.name ? -1 : 0));
  for (const candidate of segments.slice(0, 3)) {
    try {
      const head = await readHead(storage, candidate.key, encryption, longHeaderSize);
      const header = parseSegmentHeader(head);
      if (header && isValidSegmentSize(header.segmentSize)) return header.segmentSize;
    } catch {
      // Try the next one; verification reports unreadable objects.
    }
  }
  return undefined;
}

/** The first `count` decoded bytes of an object (the rest of the stream is discarded). */
export async function readHead(storage: Storage, key: string, encryption: Encryption | undefined, count: number): Promise<Buffer> {
  const stream = decodeObject(await storage.get(key), encryption, `${storage.location}/${key}`);
  const parts: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream) {
      parts.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size >= count) break;
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(parts, size).subarray(0, count);
}

/** Every archived .history file, parsed: timeline → its ancestors (oldest first). */
export async function readHistories(
  storage: Storage,
  inventory: { histories: readonly string[] },
  encryption: Encryption | undefined,
  options: { skipUnreadable?: boolean } = {},
): Promise<Map<number, TimelineHistoryEntry[]>> {
  const histories = new Map<number, TimelineHistoryEntry[]>();
  for (const name of inventory.histories) {
    const timeline = parseWalFileName(name)!.timeline;
    const key = keys.wal(name);
    let bytes: Buffer;
    try {
      bytes = await buffer(decodeObject(await storage.get(key), encryption, `${storage.location}/${key}`));
    } catch (err) {
      if (options.skipUnreadable) continue;
      throw err;
    }
    try {
      histories.set(timeline, parseTimelineHistory(bytes.toString('utf8'), timeline));
    } catch (err) {
      throw integrityError(`${storage.location}/${key}: ${(err as Error).message}`, err);
    }
  }
  return histories;
}

/**
 * Which timeline PostgreSQL reads each segment from when it recovers along `timeline`'s lineage:
 * the newest timeline of the lineage whose first segment is at or below it (as XLogFileReadAnyTLI
 * does). `undefined` history means the .history file is missing: only the timeline itself is known.
 */
export interface LineageSegmentRange {
  timeline: number;
  /** First and last segment read from this timeline (last undefined: open-ended). */
  from: bigint;
  to: bigint | undefined;
}

export function lineageRanges(timeline: number, history: readonly TimelineHistoryEntry[], segmentSize: number): LineageSegmentRange[] {
  const spans: TimelineSpan[] = timelineSpans(timeline, history);
  const size = BigInt(segmentSize);
  const ranges: LineageSegmentRange[] = [];
  for (let i = 0; i < spans.length; i++) {
    const span = spans[i]!;
    const next = spans[i + 1];
    const from = span.begin / size;
    // The segment holding the switchpoint is read from the new timeline (it starts with a copy of the old one).
    const to = next ? next.begin / size - 1n : undefined;
    if (to !== undefined && to < from) continue;
    ranges.push({ timeline: span.timeline, from, to });
  }
  return ranges;
}

/** The timeline a segment is read from along a lineage, or undefined if no range covers it. */
export function timelineForSegment(ranges: readonly LineageSegmentRange[], segNo: bigint): number | undefined {
  for (let i = ranges.length - 1; i >= 0; i--) {
    const r = ranges[i]!;
    if (segNo >= r.from && (r.to === undefined || segNo <= r.to)) return r.timeline;
  }
  return undefined;
}

/** The highest timeline the repository knows of (a .history file or any WAL file), 1 when empty. */
export function currentTimeline(inventory: WalInventory): number {
  let highest = 1;
  for (const t of inventory.timelines) if ((t.count > 0 || t.hasHistory || t.partials.length) && t.timeline > highest) highest = t.timeline;
  return highest;
}

export { historyFileName, lsnOfSegment };

/**
 * List wal/, learn wal_segment_size (the backups' record, else a segment header), group per
 * timeline and read the .history files.
 */
export async function loadInventory(
  storage: Storage,
  encryption: Encryption | undefined,
  segmentSizeHint?: number | undefined,
  options: { skipUnreadableHistories?: boolean } = {},
): Promise<{ inventory: WalInventory; histories: Map<number, TimelineHistoryEntry[]> }> {
  const listing = await listArchivedWal(storage);
  let segmentSize = await detectSegmentSize(storage, listing, encryption, segmentSizeHint);
  if (segmentSize === undefined) {
    if (listing.files.some((f) => f.kind === 'segment')) {
      throw integrityError(
        `cannot tell wal_segment_size: no backup records it and no archived segment could be read${encryption?.decrypt ? '' : ' (encrypted? set WALSHIP_IDENTITY_FILE or WALSHIP_PASSPHRASE_FILE)'}`,
      );
    }
    segmentSize = 16 * 1024 * 1024;
  }
  const inventory = buildInventory(listing, segmentSize);
  const histories = await readHistories(storage, inventory, encryption, { skipUnreadable: options.skipUnreadableHistories });
  return { inventory, histories };
}
