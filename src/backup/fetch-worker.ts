/**
 * Worker thread that lays base backup parts into the target directory: the main thread streams in
 * each part's (decrypted, still compressed) bytes; here they are decompressed, split into tar
 * entries, checked against the manifest, hashed and written. What is decoded is hashed on a
 * thread of its own while the next bytes decode; large files are written with O_DIRECT on the
 * thread pool, small ones here, and fsyncs run on the pool. There is a worker per core, each
 * taking its share of the parts being downloaded at once (DESIGN §6: native codecs off the main
 * thread).
 */
import { createHash, type Hash } from 'node:crypto';
import { close, closeSync, constants, fdatasync, fsync, ftruncateSync, openSync, write, writeSync } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { parentPort } from 'node:worker_threads';
import { payloadDecoder, type PayloadDecoder } from '../codec/decoder.ts';
import { releaseBuffer } from '../buffers.ts';
import { integrityError, WalshipError } from '../errors.ts';
import { ThreadHashes } from './hashes.ts';
import { fromManifest, Layout } from './layout.ts';
import { unsafePath, type ManifestEntry } from './manifest.ts';
import { TarReader, type TarEntry, type TarVisitor } from './tar.ts';
import { describeFailure, Inbox, type FetchWorkerData, type FromFetchWorker, type ToFetchWorker } from './workers.ts';

const port = parentPort!;
/** The backup and the target, told by the first message. */
let setup: FetchWorkerData;
let layout: Layout;
let byPath: Map<string, ManifestEntry>;
const send = (message: FromFetchWorker) => port.postMessage(message);

/**
 * Scratch buffers in shared memory, which the hashing thread reads in place: zstd decodes into
 * them, other decoders' output is copied into them. One is reused only once its hashing is done.
 */
const scratchSize = 1024 * 1024;
const scratchCount = 8;
/** Files this large are flushed every so many bytes as they are written. */
const syncEvery = 32 * 1024 * 1024;

/**
 * Writes all of `bytes` at `position`, here and now. On the thread that just decoded them, the
 * kernel's copy into the page cache reads them from this core's cache; handed to the thread pool,
 * which runs on the other core, the same copy cost about 1 s of CPU per 1.5 GB restored instead
 * of 0.14 s (perf), on a restore that is CPU-bound.
 */
function writeAll(fd: number, bytes: Buffer, position: number): void {
  for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
}

/**
 * Files this large bypass the page cache: their bytes are copied into page-aligned staging buffers
 * and written with O_DIRECT, a stage at a time, on the thread pool while the next bytes decode.
 * Through the page cache every restored byte needs a fresh page, copied into and later written
 * back; on the benchmark VM, pages the guest has not touched lately cost ~4 µs each to fault in,
 * ~1.7 s of CPU per 1.5 GB restored, for pgBackRest and walship alike. Nearly all of a cluster's
 * bytes are in large files (pgbench: 1.46 of 1.48 GiB in three files).
 */
const directFrom = 4 * 1024 * 1024;
const stageSize = 1024 * 1024;
const stageCount = 6;
/** Direct writes are of whole 4 KiB blocks (the strictest logical block size); a file's last one is cut back with ftruncate. */
const directBlock = 4096;
/** This worker met a filesystem that refuses O_DIRECT (tmpfs before Linux 6.6, some FUSE): large files go through the page cache too. */
let directUnsupported = constants.O_DIRECT === undefined;

/** `fd` (just created) reopened for direct writes, or `fd` itself where the filesystem has no O_DIRECT. */
function reopenDirect(dest: string, fd: number): { fd: number; direct: boolean } {
  if (directUnsupported) return { fd, direct: false };
  let directFd: number;
  try {
    // The file was just created, with O_EXCL, in a directory of ours: O_NOFOLLOW all the same.
    directFd = openSync(dest, constants.O_WRONLY | constants.O_DIRECT | constants.O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
    directUnsupported = true;
    return { fd, direct: false };
  }
  closeSync(fd);
  return { fd: directFd, direct: true };
}

/** Node's WebAssembly global (its types come with the DOM library, which this project leaves out). */
const wasm = (globalThis as unknown as { WebAssembly: { Memory: new (size: { initial: number }) => { buffer: ArrayBuffer } } }).WebAssembly;

/** The staging buffers of one part's direct writes: one fills while the others are written. */
class DirectStages {
  readonly #free: Buffer[];
  #wake: (() => void) | undefined;
  /** The buffer filling, its bytes so far, and the file position of its first byte. */
  current: Buffer;
  staged = 0;
  start = 0;

  constructor() {
    // WebAssembly memory is page-aligned, as O_DIRECT needs (a Buffer's memory is only 16-byte aligned).
    const memory = new wasm.Memory({ initial: (stageSize * stageCount) / 65536 });
    const all = Array.from({ length: stageCount }, (_, i) => Buffer.from(memory.buffer, i * stageSize, stageSize));
    this.current = all.pop()!;
    this.#free = all;
  }

  /** A free buffer to fill next, if any; `release` gives one back once its write is done. */
  take(): Buffer | undefined {
    return this.#free.pop();
  }

  release(buffer: Buffer): void {
    this.#free.push(buffer);
    this.#wake?.();
  }

  /**
   * Resolves once two buffers are free: enough for the next piece of input (at most 1 MiB, so it
   * fills at most one stage and ends at most one large file) to be written without waiting. Write
   * completions only arrive between pieces, when the worker's event loop turns.
   */
  async room(): Promise<void> {
    while (this.#free.length < 2) await new Promise<void>((resolve) => (this.#wake = resolve));
    this.#wake = undefined;
  }
}

interface OpenFile {
  path: string;
  dest: string | undefined;
  listed: ManifestEntry;
  fd: number | undefined;
  /** Written with O_DIRECT from the part's staging buffers. */
  direct: boolean;
  /** Hashed here, or on the hashing thread (its file number there). */
  hash: Hash | number;
  position: number;
  remaining: number;
  /** Flushes and direct writes in flight. */
  pending: number;
  ended: boolean;
  /** Bytes written since the last fdatasync was started. */
  unsynced: number;
  syncing: boolean;
}

/** Checks each tar entry against the manifest and writes the files of one part. */
class PartWriter implements TarVisitor {
  readonly seen: string[] = [];
  readonly #part: number;
  readonly #what: string;
  /**
   * The bytes given to data() are in a scratch buffer of shared memory, hashed on the hashing
   * thread; hold() keeps that buffer from reuse until the returned callback runs.
   */
  hold: () => () => void = () => () => {};
  /** Digest checks still running on the hashing thread; each rejects on a mismatch. */
  readonly verdicts: Promise<void>[] = [];
  #file: OpenFile | undefined;
  #openFiles = 0;
  #allClosed: (() => void) | undefined;
  #writtenBytes = 0;
  #failure: unknown;
  #stages: DirectStages | undefined;

  constructor(part: number, what: string) {
    this.#part = part;
    this.#what = what;
  }

  takeWrittenBytes(): number {
    const bytes = this.#writtenBytes;
    this.#writtenBytes = 0;
    return bytes;
  }

  entry(header: TarEntry): void {
    const name = header.type === 'directory' ? header.name.replace(/\/+$/, '') : header.name;
    const refuse = (why: string) => integrityError(`${this.#what}: refusing tar entry ${JSON.stringify(header.name)}: ${why}`);
    const problem = unsafePath(name);
    if (problem) throw refuse(problem);
    const listed = byPath.get(name);
    if (!listed) throw refuse('not in the backup manifest');
    const type = header.type === 'directory' ? 'dir' : header.type === 'symlink' ? 'symlink' : header.type === 'file' ? 'file' : undefined;
    if (!type) throw refuse(`entry type ${header.type} is not allowed in a backup`);
    if (type !== listed.type) throw refuse(`the manifest lists it as a ${listed.type}, the part holds a ${type}`);
    this.#file = undefined;
    // Links are created from the manifest (checked to stay inside the target) after all files; directories already exist.
    if (type === 'symlink' && header.linkname !== listed.target) throw refuse(`link target ${JSON.stringify(header.linkname)} differs from the manifest`);
    if (type !== 'file') return;
    if (listed.part !== this.#part) throw refuse(`the manifest places it in part ${listed.part}`);
    if (seenAnywhere.has(name)) throw refuse('it appears twice');
    seenAnywhere.add(name);
    this.seen.push(name);
    if (header.size < listed.size!) throw integrityError(`${this.#what}: ${name} holds ${header.size} bytes, the manifest says ${listed.size}`);
    let fd: number | undefined;
    let dest: string | undefined;
    let direct = false;
    const fromLabel = fromManifest.has(name);
    if (!fromLabel) {
      dest = layout.destination(name);
      try {
        // O_EXCL: never write through something already there (including a link).
        fd = openSync(dest, 'wx', 0o600);
        this.#openFiles++;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw refuse(`${dest} already exists`);
        throw err;
      }
      if (listed.size! >= directFrom) {
        try {
          ({ fd, direct } = reopenDirect(dest, fd));
        } catch (err) {
          // Not left open: the part fails, and settle() waits for every file it opened.
          closeSync(fd);
          this.#openFiles--;
          throw err;
        }
      }
      if (direct) {
        this.#stages ??= new DirectStages();
        this.#stages.start = 0;
      }
    }
    // backup_label and tablespace_map are compared with the manifest's text too: hashed here.
    const hash = fromLabel ? createHash('sha256') : hashing.start();
    this.#file = { path: name, dest, listed, fd, direct, hash, position: 0, remaining: listed.size!, pending: 0, ended: false, unsynced: 0, syncing: false };
  }

  data(chunk: Buffer): void {
    const file = this.#file;
    if (!file || file.remaining === 0) return;
    const used = file.remaining >= chunk.length ? chunk : chunk.subarray(0, file.remaining);
    if (typeof file.hash !== 'number') file.hash.update(used);
    else hashing.update(file.hash, used, this.hold());
    file.remaining -= used.length;
    if (file.fd === undefined) return;
    if (file.direct) this.#stage(file, used);
    else {
      writeAll(file.fd, used, file.position);
      file.unsynced += used.length;
      this.#syncEarly(file);
    }
    file.position += used.length;
    this.#writtenBytes += used.length;
  }

  /** Copy `bytes` into the staging buffers, writing each one that fills. */
  #stage(file: OpenFile, bytes: Buffer): void {
    const stages = this.#stages!;
    for (let at = 0; at < bytes.length; ) {
      const copied = bytes.copy(stages.current, stages.staged, at);
      stages.staged += copied;
      at += copied;
      if (stages.staged === stageSize) this.#writeStage(file, stageSize);
    }
  }

  /**
   * Write the filling stage's first `length` bytes (a multiple of directBlock) directly: on the
   * thread pool while another buffer fills (room() sees to one being free), or else here and now.
   */
  #writeStage(file: OpenFile, length: number): void {
    const stages = this.#stages!;
    const fd = file.fd!;
    const { current, start } = stages;
    stages.start += length;
    stages.staged = 0;
    const next = stages.take();
    if (!next) return writeAll(fd, current.subarray(0, length), start);
    stages.current = next;
    file.pending++;
    const done = (err: unknown) => {
      stages.release(current);
      file.pending--;
      if (err) this.#failure ??= err;
      this.#closeWhenDone(file);
    };
    const from = (offset: number): void =>
      write(fd, current, offset, length - offset, start + offset, (err, written) => {
        if (err || offset + written === length) return done(err);
        from(offset + written);
      });
    from(0);
  }

  entryEnd(): void {
    const file = this.#file;
    this.#file = undefined;
    if (!file) return;
    const stages = this.#stages;
    if (file.direct && file.fd !== undefined && stages!.staged > 0) {
      // The last bytes, padded to a whole block; #closeWhenDone cuts the file back to its size.
      const padded = Math.ceil(stages!.staged / directBlock) * directBlock;
      stages!.current.fill(0, stages!.staged, padded);
      this.#writeStage(file, padded);
    }
    file.ended = true;
    this.#closeWhenDone(file);
    const mismatch = () => integrityError(`backup ${setup.manifestName}: ${file.path} (part ${this.#part}) does not match its SHA-256 in the manifest; the backup is corrupt`);
    if (typeof file.hash === 'number') {
      const verdict = hashing
        .digest(file.hash)
        .then((digest) => {
          if (digest !== file.listed.sha256) throw mismatch();
        });
      verdict.catch(() => {}); // awaited at the end of the part
      this.verdicts.push(verdict);
      return;
    }
    const digest = file.hash.digest('hex');
    if (fromManifest.has(file.path)) {
      const text = file.path === 'backup_label' ? setup.backupLabel : setup.tablespaceMap;
      if (digest !== file.listed.sha256 || createHash('sha256').update(text).digest('hex') !== file.listed.sha256) {
        throw integrityError(`${this.#what}: ${file.path} does not match the manifest (SHA-256 mismatch)`);
      }
    } else if (digest !== file.listed.sha256) {
      throw mismatch();
    }
  }

  /**
   * Large files are flushed as they are written, on the thread pool: the disk works while the rest
   * decodes, instead of all of it waiting for the file's fsync.
   */
  #syncEarly(file: OpenFile): void {
    if (file.unsynced < syncEvery || file.syncing || file.fd === undefined) return;
    file.syncing = true;
    file.unsynced = 0;
    file.pending++;
    fdatasync(file.fd, (err) => {
      file.syncing = false;
      file.pending--;
      if (err) this.#failure ??= err;
      this.#closeWhenDone(file);
    });
  }

  #closeWhenDone(file: OpenFile): void {
    if (!file.ended || file.pending > 0 || file.fd === undefined) return;
    const fd = file.fd;
    file.fd = undefined;
    if (file.direct) {
      try {
        ftruncateSync(fd, file.position);
      } catch (err) {
        this.#failure ??= err;
      }
    }
    // Every file is fsynced here, on the thread pool, while the parts go on decoding: syncing ~1000
    // small files after the last part instead took 0.1 s at the end of a 1.5 GB restore.
    fsync(fd, (err) => {
      if (err) this.#failure ??= err;
      close(fd, () => {
        if (--this.#openFiles === 0) this.#allClosed?.();
      });
    });
  }

  /** Resolves once the next piece of input can be written without waiting for the disk. */
  async room(): Promise<void> {
    await this.#stages?.room();
  }

  /** Throws the first failure of a flush. */
  check(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Close the file still open after a failure, and wait until every file is closed. */
  async settle(): Promise<void> {
    if (this.#file) {
      this.#file.ended = true;
      this.#closeWhenDone(this.#file);
    }
    while (this.#openFiles > 0) await new Promise<void>((resolve) => (this.#allClosed = resolve));
  }
}

/** This worker's hashing thread, started at once: a thread takes ~35 ms to start, which the first part would otherwise wait for. */
const hashing = new ThreadHashes();

/** Every file name seen by this worker (parts never share a file; a repeat within the backup is refused). */
const seenAnywhere = new Set<string>();

type PartMessage = Extract<ToFetchWorker, { type: 'data' | 'end' | 'abort' }>;
/** The parts in progress, each with its own queue of messages. */
const inboxes = new Map<number, Inbox<PartMessage>>();
const running = new Set<Promise<void>>();
let closed: () => void = () => {};
const closing = new Promise<void>((resolve) => (closed = resolve));

port.on('message', (message: ToFetchWorker) => {
  if (message.type === 'setup') {
    setup = message.setup;
    layout = new Layout(setup.target, setup.tablespaces);
    byPath = new Map(setup.files.map((f) => [f.path, f]));
  } else if (message.type === 'part') {
    const inbox = new Inbox<PartMessage>();
    inboxes.set(message.part, inbox);
    const run = extractPart(message.part, message.what, inbox).then(
      (result) => send({ type: 'done', part: message.part, ...result }),
      (err: unknown) => send({ type: 'failed', part: message.part, error: describeFailure(err) }),
    );
    running.add(run);
    void run.finally(() => {
      inboxes.delete(message.part);
      running.delete(run);
    });
  } else if (message.type === 'data' || message.type === 'end') inboxes.get(message.part)?.put(message);
  else if (message.type === 'abort') for (const inbox of inboxes.values()) inbox.put(message);
  else if (message.type === 'close') closed();
});

/** Every file is checked against its SHA-256 in the manifest: zstd need not check its own checksum too. */
const decoding = { contentVerifiedByCaller: true };

async function extractPart(part: number, what: string, inbox: Inbox<PartMessage>): Promise<{ seen: string[] }> {
  const writer = new PartWriter(part, what);
  const tar = new TarReader(writer);
  const scratch = Array.from({ length: scratchCount }, () => ({ buffer: Buffer.from(new SharedArrayBuffer(scratchSize)), holds: 0, free: undefined as (() => void) | undefined }));
  let slot = 0;
  let decoder: PayloadDecoder | undefined;
  let head: Buffer = Buffer.alloc(0);
  const asCorrupt = (err: unknown, why: string) => (err instanceof WalshipError || (err as NodeJS.ErrnoException).syscall !== undefined ? err : integrityError(`${what}: ${why} (${(err as Error).message})`, err));

  /** The scratch buffer to use next, once its hashing is done (and the direct writes have room). */
  const freeScratch = async () => {
    await writer.room();
    const s = scratch[slot]!;
    while (s.holds > 0) await new Promise<void>((resolve) => (s.free = resolve));
    return s;
  };
  /** Unpack `piece`, which is in scratch buffer `s`; the next piece goes to the next buffer. */
  const untar = (s: (typeof scratch)[number], piece: Buffer) => {
    slot = (slot + 1) % scratchCount;
    writer.hold = () => {
      s.holds++;
      return () => {
        if (--s.holds === 0) s.free?.();
      };
    };
    try {
      tar.push(piece);
    } catch (err) {
      throw asCorrupt(err, 'not a valid backup part');
    }
    writer.check();
  };

  const drain = async () => {
    for (;;) {
      const s = await freeScratch();
      let out: Buffer | undefined;
      try {
        out = decoder!.next(s.buffer);
      } catch (err) {
        throw asCorrupt(err, 'corrupt object');
      }
      if (!out) return;
      if (out.buffer === s.buffer.buffer) {
        untar(s, out);
        continue;
      }
      // Bytes in a buffer of the decoder's own (an lz4 frame, a plain chunk) are copied into the
      // scratch buffers a piece at a time, so they too are hashed on the hashing thread, and each
      // piece is written while it is still in this core's cache (lz4 frames are 4 MiB). Inline,
      // the hashing of a 1 GiB file alone kept an lz4 restore's longest part going for 0.6 s more.
      for (let at = 0; at < out.length; at += scratchSize) {
        const t = await freeScratch();
        untar(t, t.buffer.subarray(0, out.copy(t.buffer, 0, at)));
      }
      // The decoder's buffer (lz4-napi's memory, which V8 does not count and so collects late) is
      // freed at once; lz4-napi gives it back on the next turn of the event loop, so let one come
      // (messages waiting in the inbox do not).
      releaseBuffer(out);
      await nextTurn();
    }
  };

  try {
    for (;;) {
      const message = await inbox.next();
      if (message.type === 'abort') throw new Error('aborted: another part failed');
      if (message.type === 'end') break;
      const bytes = message.chunk.byteLength; // taken now: the decoder frees the chunk once decoded
      let input = Buffer.from(message.chunk.buffer, message.chunk.byteOffset, bytes);
      if (!decoder) {
        // The compression is told by the first bytes (4 are enough for every magic).
        head = head.length ? Buffer.concat([head, input]) : input;
        if (head.length < 4) {
          send({ type: 'ack', part, bytes, written: 0 });
          continue;
        }
        try {
          decoder = payloadDecoder(head, decoding);
        } catch (err) {
          throw asCorrupt(err, 'corrupt object');
        }
        input = head;
      }
      decoder.push(input);
      await drain();
      send({ type: 'ack', part, bytes, written: writer.takeWrittenBytes() });
    }
    if (!decoder) {
      decoder = payloadDecoder(head, decoding);
      decoder.push(head);
      await drain();
    }
    try {
      decoder.end();
    } catch (err) {
      throw asCorrupt(err, 'corrupt object');
    }
    try {
      tar.end();
    } catch (err) {
      throw asCorrupt(err, 'not a valid backup part');
    }
    await writer.settle();
    writer.check();
    await Promise.all(writer.verdicts);
    return { seen: writer.seen };
  } finally {
    await writer.settle();
    send({ type: 'ack', part, bytes: 0, written: writer.takeWrittenBytes() });
  }
}

await closing;
await Promise.all(running);
await hashing.close();
port.close();
