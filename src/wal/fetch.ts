import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { writeAll } from '../fsutil.ts';
import { Readable } from 'node:stream';
import { decodeObject, sniff, type Encryption } from '../codec/codec.ts';
import { integrityError, usageError } from '../errors.ts';
import { lsnOfSegment, parseWalFileName, segmentNumber, formatLsn } from '../pg/wal-names.ts';
import { longHeaderSize, parseSegmentHeader } from '../pg/wal-page.ts';
import { keys } from '../repository.ts';
import type { Storage } from '../storage/storage.ts';
import { walDirOf } from './lookahead.ts';
import { dropOtherTimelines, takeFromSpool, tellPrefetcher } from './prefetch.ts';

export interface WalFetchContext {
  storage: Storage;
  encryption?: Encryption | undefined;
  /**
   * Read the object whole and decode it in one call when it is small (a WAL segment): for a
   * process that fetches one file and exits, far faster than streams (no stream or addon warm-up).
   * A long-lived process (the daemon) streams.
   */
  wholeFile?: boolean | undefined;
}

/** Objects up to this size are read whole with `wholeFile`, and decode to at most `wholeDecodedLimit`. */
const wholeObjectLimit = 32 * 1024 * 1024;
const wholeDecodedLimit = 64 * 1024 * 1024;

/**
 * Restore one WAL file for PostgreSQL's restore_command. Rejects with ObjectNotFoundError after a
 * single request when the archive lacks it; `dest` appears only complete (temp file + rename).
 */
export async function fetchWalFile(name: string, dest: string, ctx: WalFetchContext): Promise<number> {
  const wal = parseWalFileName(name);
  if (!wal) throw usageError(`'${name}' is not a WAL file name`);
  const key = keys.wal(name);
  const object = await ctx.storage.get(key);
  const temp = join(dirname(dest), `.${basename(dest)}.walship-${process.pid}`);
  try {
    const out = await open(temp, 'wx+', 0o600).catch((err: NodeJS.ErrnoException) => {
      throw usageError(`cannot write ${temp}: ${err.code === 'ENOENT' ? 'no such directory' : err.code === 'EACCES' ? 'permission denied' : err.message}`);
    });
    let size = 0;
    const what = `${ctx.storage.location}/${key}`;
    try {
      const whole = ctx.wholeFile ? await readUpTo(object, wholeObjectLimit) : undefined;
      const decoded = whole?.complete ? await decodeWhole(whole.bytes, what) : undefined;
      if (decoded) {
        await out.writeFile(decoded);
        size = decoded.length;
      } else {
        const source = whole ? (whole.complete ? Readable.from([whole.bytes]) : whole.rest) : object;
        size = await writeAll(out, decodeObject(source, ctx.encryption, what));
      }
      if (wal.kind === 'segment' || wal.kind === 'partial') await checkFetchedSegment(out, name, wal.segmentId!, size);
      // PostgreSQL's RECOVERYXLOG is read at once and, when PostgreSQL keeps the file, made durable
      // by PostgreSQL itself (durable_rename); after a crash recovery asks again. Every other
      // destination (the prefetch spool, which bin/walship serves without re-reading, a manual
      // fetch) is made durable here before it appears under its name.
      if (!basename(dest).startsWith('RECOVERY')) await out.sync();
    } finally {
      await out.close();
    }
    await rename(temp, dest);
    return size;
  } catch (err) {
    await unlink(temp).catch(() => {});
    throw err;
  }
}

/** Read a stream until its end or past `limit` bytes; past it, `rest` replays everything read and continues. */
async function readUpTo(stream: Readable, limit: number): Promise<{ complete: true; bytes: Buffer } | { complete: false; rest: Readable }> {
  const chunks: Buffer[] = [];
  let size = 0;
  const iterator = stream[Symbol.asyncIterator]();
  for (;;) {
    const next = await iterator.next();
    if (next.done) return { complete: true, bytes: Buffer.concat(chunks, size) };
    chunks.push(next.value as Buffer);
    size += (next.value as Buffer).length;
    if (size > limit) {
      async function* replay() {
        yield* chunks;
        for (let step = await iterator.next(); !step.done; step = await iterator.next()) yield step.value as Buffer;
      }
      return { complete: false, rest: Readable.from(replay(), { objectMode: false }) };
    }
  }
}

/**
 * Decode an unencrypted zstd object (or an uncompressed one) in one call, with node:zlib's zstd on
 * the thread pool. Not zstd-napi's one-shot decompress, though twice as fast: it accepts a frame
 * whose checksum is cut short (measured: an object missing its last byte decodes "fine").
 * Undefined: not that kind, or too big to hold; the caller streams through the codec then.
 * Corruption is an integrity error, as in the codec.
 */
async function decodeWhole(bytes: Buffer, what: string): Promise<Buffer | undefined> {
  const kind = sniff(bytes.subarray(0, 32));
  if (kind === 'none') return bytes;
  if (kind !== 'zstd') return undefined;
  const { zstdDecompress } = await import('node:zlib');
  try {
    return await new Promise<Buffer>((resolve, reject) =>
      zstdDecompress(bytes, { maxOutputLength: wholeDecodedLimit, chunkSize: 4 << 20 }, (err, out) => (err ? reject(err) : resolve(out))),
    );
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (err instanceof RangeError || code === 'ERR_BUFFER_TOO_LARGE') return undefined;
    throw integrityError(`${what}: corrupt object (${(err as Error).message})`, err);
  }
}

/** Never hand PostgreSQL a segment whose content is not the one its name promises. */
async function checkFetchedSegment(handle: import('node:fs/promises').FileHandle, name: string, segmentId: string, size: number) {
  const head = Buffer.alloc(longHeaderSize);
  await handle.read(head, 0, longHeaderSize, 0);
  const header = parseSegmentHeader(head);
  if (!header || header.segmentSize !== size) {
    throw integrityError(`archived ${name}: decoded to ${size} bytes without a matching WAL segment header`);
  }
  const expected = lsnOfSegment(segmentNumber(segmentId, size), size);
  if (header.pageAddress !== expected) {
    throw integrityError(`archived ${name}: holds the segment for LSN ${formatLsn(header.pageAddress)}, not ${formatLsn(expected)}`);
  }
}

export interface PrefetchHooks {
  /** Segments to fetch ahead (0 = off). */
  depth: number;
  /** How long to wait for a prefetcher already downloading the requested segment. */
  waitMs: number;
  /** Start a prefetcher for this pg_wal (a detached process, or one inside the daemon). */
  startPrefetcher(walDir: string, name: string, segmentSize: number): void | Promise<void>;
}

export type FetchSource = 'spool' | 'storage';

/**
 * wal-fetch as restore_command runs it: a segment PostgreSQL asks for into pg_wal is taken from
 * the prefetch spool when a verified copy is there (one rename), else fetched from storage; either
 * way the prefetcher learns the position and keeps the next segments coming.
 */
export async function fetchForRecovery(
  name: string,
  dest: string,
  ctx: WalFetchContext,
  hooks: PrefetchHooks | undefined,
): Promise<{ size: number; source: FetchSource }> {
  const walDir = walDirOf(dest);
  const wal = parseWalFileName(name);
  if (!hooks || hooks.depth <= 0 || !walDir || wal?.kind !== 'segment') return { size: await fetchWalFile(name, dest, ctx), source: 'storage' };
  let size = await takeFromSpool(walDir, name, dest);
  if (size !== undefined) {
    if ((await tellPrefetcher(walDir, name, size)) === undefined) await hooks.startPrefetcher(walDir, name, size);
    return { size, source: 'spool' };
  }
  await dropOtherTimelines(walDir, name);
  const answer = await tellPrefetcher(walDir, name, undefined, hooks.waitMs);
  if (answer === 'have') {
    size = await takeFromSpool(walDir, name, dest);
    if (size !== undefined) return { size, source: 'spool' };
  }
  size = await fetchWalFile(name, dest, ctx);
  if (answer === undefined) await hooks.startPrefetcher(walDir, name, size);
  else await tellPrefetcher(walDir, name, size);
  return { size, source: 'storage' };
}
