import { text } from 'node:stream/consumers';
import { decodeObject, type Encryption } from '../codec/codec.ts';
import { integrityError } from '../errors.ts';
import { parseWalFileName, segmentNumber } from '../pg/wal-names.ts';
import { historyFileName, parseTimelineHistory, type TimelineHistoryEntry } from '../pg/timeline-history.ts';
import { keys } from '../repository.ts';
import { isNotFound, type Storage } from '../storage/storage.ts';

/** What the repository's wal/ holds, listed once. */
export class ArchiveIndex {
  /** Segment file names (no .partial). */
  readonly segments = new Set<string>();
  readonly modified = new Map<string, Date>();
  /** Timelines that have a .history file. */
  readonly histories = new Set<number>();
  readonly #storage: Storage;
  readonly #encryption: Encryption | undefined;
  readonly #historyCache = new Map<number, TimelineHistoryEntry[] | undefined>();

  private constructor(storage: Storage, encryption: Encryption | undefined) {
    this.#storage = storage;
    this.#encryption = encryption;
  }

  static async scan(storage: Storage, encryption: Encryption | undefined): Promise<ArchiveIndex> {
    const index = new ArchiveIndex(storage, encryption);
    for await (const object of storage.list(keys.walPrefix)) {
      const wal = parseWalFileName(object.key.slice(keys.walPrefix.length));
      if (!wal) continue;
      if (wal.kind === 'segment') {
        index.segments.add(wal.name);
        index.modified.set(wal.name, object.modified);
      } else if (wal.kind === 'history') index.histories.add(wal.timeline);
    }
    return index;
  }

  /** The newest segment number on `timeline` (undefined when none). */
  newestSegment(timeline: number, segmentSize: number): bigint | undefined {
    let newest: bigint | undefined;
    const prefix = timeline.toString(16).toUpperCase().padStart(8, '0');
    for (const name of this.segments) {
      if (!name.startsWith(prefix)) continue;
      const segNo = segmentNumber(name.slice(8), segmentSize);
      if (newest === undefined || segNo > newest) newest = segNo;
    }
    return newest;
  }

  /** The history of `timeline` from the archive; [] for timeline 1; undefined when its .history is not archived. */
  async history(timeline: number): Promise<TimelineHistoryEntry[] | undefined> {
    if (timeline === 1) return [];
    if (this.#historyCache.has(timeline)) return this.#historyCache.get(timeline);
    let entries: TimelineHistoryEntry[] | undefined;
    const key = keys.wal(historyFileName(timeline));
    try {
      const body = await text(decodeObject(await this.#storage.get(key), this.#encryption, `${this.#storage.location}/${key}`));
      try {
        entries = parseTimelineHistory(body, timeline);
      } catch (err) {
        throw integrityError(`${this.#storage.location}/${key}: ${(err as Error).message}`);
      }
    } catch (err) {
      if (!isNotFound(err)) throw err;
      entries = undefined;
    }
    this.#historyCache.set(timeline, entries);
    return entries;
  }

  /**
   * recovery_target_timeline = 'latest' as PostgreSQL resolves it (findNewestTimeLine): from the
   * backup's timeline, probe history files of the following timeline numbers while they exist.
   */
  latestTimeline(from: number): number {
    let newest = from;
    for (let probe = from + 1; this.histories.has(probe); probe++) newest = probe;
    return newest;
  }
}
