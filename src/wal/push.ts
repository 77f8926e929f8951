import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { Readable } from 'node:stream';
import { encodeObject, type EncodeOptions, type Encryption } from '../codec/codec.ts';
import { integrityError, refusedError, usageError } from '../errors.ts';
import { log } from '../log.ts';
import { isValidSegmentSize, lsnOfSegment, parseWalFileName, segmentNumber, formatLsn, type WalFileName } from '../pg/wal-names.ts';
import { longHeaderSize, parseSegmentHeader, type WalSegmentHeader } from '../pg/wal-page.ts';
import { checkRepositoryEncryption, claimRepository, keys } from '../repository.ts';
import { encryptionRecord, uncomparableEncrypted } from '../codec/keys.ts';
import { isExists, type Storage } from '../storage/storage.ts';
import { digestOfObject } from './digest.ts';
import { pushedBefore, recordPush } from './push-record.ts';

export interface WalPushContext {
  storage: Storage;
  encode: EncodeOptions;
  encryption?: Encryption | undefined;
  /** Store unencrypted even into a repository walship.json records as encrypted (WALSHIP_ALLOW_UNENCRYPTED). */
  allowUnencrypted?: boolean | undefined;
  /**
   * Read the whole file and compress it in one call instead of streaming (files up to 64 MiB).
   * Much faster for WAL segments: stream machinery and zstd's worker thread cost tens of
   * milliseconds to start in a fresh process, and the one-shot compression runs on the thread pool.
   */
  wholeFile?: boolean | undefined;
}

/** Largest file read whole with `wholeFile` (a 64 MiB wal_segment_size; larger ones stream). */
export const wholeFileLimit = 64 * 1024 * 1024;

export type WalPushResult = 'stored' | 'already-archived';

/**
 * Archive one WAL file as PostgreSQL's archive_command: resolves only once the object is durable.
 * An object already stored under the name is accepted only if its payload is byte-identical.
 */
export async function pushWalFile(path: string, ctx: WalPushContext): Promise<WalPushResult> {
  const wal = parseWalFileName(basename(path));
  if (!wal) throw usageError(`${path}: not a WAL file name (expected a segment, .partial, .backup or .history file)`);
  const handle = await openWalFile(path);
  // The whole file, when read whole; back to the spare buffers once the object is stored (or
  // found), never after a failure (a torn-down stream might still hold it).
  let whole: Buffer | undefined;
  let reusable = false;
  try {
    const { size } = await handle.stat();
    if (size === 0) throw usageError(`${path}: empty file; PostgreSQL never archives an empty WAL file`);
    const header = wal.kind === 'segment' || wal.kind === 'partial' ? await checkSegment(path, handle, wal, size) : undefined;
    // Encryption: walship.json records it at first write; an unencrypted push into an encrypted repository is refused.
    const writing = encryptionRecord(ctx.encode.encryption);
    const info = header ? await claimRepository(ctx.storage, { systemIdentifier: header.systemIdentifier, pgMajor: header.pgMajor }, { encryption: writing }) : undefined;
    await checkRepositoryEncryption(ctx.storage, info, writing, { allowUnencrypted: ctx.allowUnencrypted });

    // No hashing on the way: it is needed only when the name is taken, and the WAL file is
    // immutable, so it is read once more then (SHA-256 of 16 MiB costs every push ~10 ms of CPU).
    const key = keys.wal(wal.name);
    const body =
      ctx.wholeFile && size <= wholeFileLimit
        ? await encodeWhole((whole = await readWhole(handle, size)), ctx.encode)
        : await encodeObject(createReadStream('', { fd: handle, autoClose: false, start: 0, highWaterMark: 1 << 20 }), ctx.encode);
    // Errors of the body reach put through its reads; one left unread (put failed early) is torn
    // down with the file handle and must not crash the process as an unhandled 'error' event.
    if (!Buffer.isBuffer(body)) body.on('error', () => {});
    try {
      await ctx.storage.put(key, body, { ifAbsent: true, size });
      reusable = true;
      await recordPush(path, handle, ctx.storage.location);
      log.debug('archived', { file: wal.name, bytes: size });
      return 'stored';
    } catch (err) {
      if (!isExists(err)) throw err;
      if (!ctx.encryption?.decrypt && (await pushedBefore(path, handle, ctx.storage.location))) {
        log.info('already archived by this host (same file, recorded after its durable push)', { file: wal.name });
        return 'already-archived';
      }
      const local = await digestOfFile(handle);
      const stored = await digestOfObject(ctx.storage, key, ctx.encryption).catch(uncomparableEncrypted(wal.name, ctx.storage.location, ctx.encryption));
      if (stored === local) {
        log.info('already archived with identical content', { file: wal.name });
        return 'already-archived';
      }
      throw refusedError(
        `${wal.name} is already archived in ${ctx.storage.location} with different content (stored sha256 ${stored}, local sha256 ${local}); refusing to overwrite`,
      );
    }
  } finally {
    await handle.close();
    if (whole && reusable) spareBuffers.release(whole);
  }
}

/**
 * Buffers for whole WAL files, reused within a process (a lookahead batch, the daemon): a fresh
 * 16 MiB buffer costs ~5 ms of page faults each time. At most a few are kept.
 */
const spareBuffers = {
  free: [] as Buffer[],
  take(size: number): Buffer {
    const i = this.free.findIndex((b) => b.length === size);
    return i >= 0 ? this.free.splice(i, 1)[0]! : Buffer.allocUnsafeSlow(size);
  },
  release(buffer: Buffer): void {
    if (this.free.length < 4) this.free.push(buffer);
  },
};

async function readWhole(handle: FileHandle, size: number): Promise<Buffer> {
  const bytes = spareBuffers.take(size);
  let done = 0;
  while (done < size) {
    const { bytesRead } = await handle.read(bytes, done, size - done, done);
    if (bytesRead === 0) throw integrityError(`WAL file shrank while read (${done} of ${size} bytes)`);
    done += bytesRead;
  }
  return bytes;
}

/**
 * The same object bytes `encodeObject` writes (codec.ts: a zstd frame with content checksum, or lz4
 * frames, then age), made from a buffer: zstd in one call, the rest through the codec's streams.
 */
async function encodeWhole(payload: Buffer, options: EncodeOptions): Promise<Buffer | Readable> {
  let compressing: Promise<Buffer | Readable> = Promise.resolve(payload);
  if (options.compression === 'zstd') {
    // node:zlib's zstd, not zstd-napi: same frame format (content checksum on, as the codec
    // writes), no addon to load (~8 ms), and its one-shot call runs on libuv's thread pool, so a
    // lookahead batch or the daemon compresses several files at once off the main thread.
    const { zstdCompress, constants } = await import('node:zlib');
    const params = { [constants.ZSTD_c_compressionLevel]: options.level ?? 1, [constants.ZSTD_c_checksumFlag]: 1 };
    // Output in 4 MiB pieces: with the default 16 KiB, each piece is one more trip to the thread
    // pool (twice the time for a 16 MiB segment, measured).
    compressing = new Promise<Buffer>((resolve, reject) => zstdCompress(payload, { params, chunkSize: 4 << 20 }, (err, out) => (err ? reject(err) : resolve(out))));
  } else if (options.compression === 'lz4') {
    compressing = encodeObject(Readable.from([payload]), { compression: 'lz4' });
  }
  const { encrypt, wholeEncryptor } = options.encryption ?? {};
  // The age header (a key exchange per recipient) is made here while the pool compresses.
  const sealing = encrypt ? wholeEncryptor?.() : undefined;
  sealing?.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
  const compressed = await compressing;
  if (!encrypt) return compressed;
  if (Buffer.isBuffer(compressed) && sealing) {
    // Once compressed, the segment's buffer is free: the object is built in it (its pages are
    // already mapped; a fresh 16 MiB buffer costs ~2 ms of page faults), unless nothing was compressed.
    return (await sealing)(compressed, compressed === payload ? undefined : payload);
  }
  return (Buffer.isBuffer(compressed) ? Readable.from([compressed]) : compressed).compose(await encrypt());
}

/** SHA-256 (hex) of an open file's whole content, read from its start. */
async function digestOfFile(handle: FileHandle): Promise<string> {
  const { createHash } = await import('node:crypto');
  const hash = createHash('sha256');
  for await (const chunk of createReadStream('', { fd: handle, autoClose: false, start: 0, highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function openWalFile(path: string): Promise<FileHandle> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw usageError(`${path}: cannot read WAL file: ${reason}`);
  }
  const info = await handle.stat();
  if (!info.isFile()) {
    await handle.close();
    throw usageError(`${path}: not a regular file`);
  }
  return handle;
}

/** A segment's first page must describe this very segment: right size, right address. */
async function checkSegment(path: string, handle: FileHandle, wal: WalFileName, size: number): Promise<WalSegmentHeader> {
  const head = Buffer.alloc(longHeaderSize);
  await handle.read(head, 0, longHeaderSize, 0);
  const header = parseSegmentHeader(head);
  if (!header || !isValidSegmentSize(header.segmentSize)) {
    throw integrityError(`${path}: no valid WAL page header at the start of the segment`);
  }
  if (header.segmentSize !== size) {
    throw integrityError(`${path}: file is ${size} bytes but its header says wal_segment_size is ${header.segmentSize}`);
  }
  const expected = lsnOfSegment(segmentNumber(wal.segmentId!, size), size);
  if (header.pageAddress !== expected) {
    throw integrityError(`${path}: first page is for LSN ${formatLsn(header.pageAddress)}, not ${formatLsn(expected)} as its name says`);
  }
  return header;
}

