/**
 * Worker thread that lays base backup parts into the target directory: the main thread streams in
 * each part's (decrypted, still compressed) bytes; here they are decompressed, split into tar
 * entries, checked against the manifest, hashed and written. Writes go to the thread pool while
 * the next bytes decode, so one part keeps a core busy; there is a worker per core, each taking
 * its share of the parts being downloaded at once (DESIGN §6: native codecs off the main thread).
 */
import { createHash, type Hash } from 'node:crypto';
import { close, fdatasync, fsync, openSync, writev } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { payloadDecoder, type PayloadDecoder } from '../codec/decoder.ts';
import { releaseBuffer } from '../buffers.ts';
import { integrityError, WalshipError } from '../errors.ts';
import { ThreadHashes } from './hashes.ts';
import { fromManifest, Layout } from './layout.ts';
import { unsafePath, type ManifestEntry } from './manifest.ts';
import { TarReader, type TarEntry, type TarVisitor } from './tar.ts';
import { describeFailure, Inbox, type FetchWorkerData, type FromFetchWorker, type ToFetchWorker } from './workers.ts';

const setup = workerData as FetchWorkerData;
const port = parentPort!;
const layout = new Layout(setup.target, setup.tablespaces);
const byPath = new Map(setup.files.map((f) => [f.path, f]));
const send = (message: FromFetchWorker) => port.postMessage(message);

/**
 * Scratch buffers zstd decodes into, in shared memory so the hashing thread reads them in place;
 * one is reused only once its writes and its hashing are done.
 */
const scratchSize = 1024 * 1024;
const scratchCount = 8;
/** Decoded bytes in flight to the disk at most (lz4 frames and plain parts write from their own buffers). */
const maxInFlight = 8 * 1024 * 1024;
/** Files this large are flushed every so many bytes as they are written. */
const syncEvery = 32 * 1024 * 1024;

/**
 * Writes on the thread pool, each buffer tracked until the kernel has it. One write per file at a
 * time (whatever queued meanwhile goes in one writev): parallel writes to one file only contend
 * for its inode lock.
 */
class Writes {
  #inFlight = 0;
  #failure: unknown;
  #wake: (() => void) | undefined;
  readonly #queues = new Map<number, { bytes: Buffer; position: number; done: () => void }[]>();

  /** Write all of `bytes` at `position`; `done` runs once they are written (or failed). */
  submit(fd: number, bytes: Buffer, position: number, done: () => void): void {
    this.#inFlight += bytes.length;
    const queue = this.#queues.get(fd);
    if (queue) return void queue.push({ bytes, position, done });
    this.#queues.set(fd, [{ bytes, position, done }]);
    this.#start(fd);
  }

  #start(fd: number): void {
    const batch = this.#queues.get(fd)!.splice(0);
    let buffers = batch.map((w) => w.bytes);
    let position = batch[0]!.position;
    const finish = (err: unknown) => {
      // After a failure, what queued meanwhile is not written, but still let go of (its file must close).
      const over = err ? batch.concat(this.#queues.get(fd)!.splice(0)) : batch;
      for (const w of over) {
        this.#inFlight -= w.bytes.length;
        w.done();
      }
      if (err && this.#failure === undefined) this.#failure = err;
      if (this.#queues.get(fd)!.length > 0) this.#start(fd);
      else this.#queues.delete(fd);
      this.#wake?.();
    };
    const step = () =>
      writev(fd, buffers, position, (err, written) => {
        if (err) return finish(err);
        position += written;
        // A short write: go on with what is left.
        while (buffers.length > 0 && written >= buffers[0]!.length) written -= buffers.shift()!.length;
        if (buffers.length === 0) return finish(undefined);
        buffers[0] = buffers[0]!.subarray(written);
        step();
      });
    step();
  }

  fail(err: unknown): void {
    if (this.#failure === undefined) this.#failure = err;
    this.#wake?.();
  }

  /** Wait until at most `bytes` are in flight; throws the first write failure. */
  async below(bytes: number): Promise<void> {
    while (this.#inFlight > bytes && this.#failure === undefined) await new Promise<void>((resolve) => (this.#wake = resolve));
    if (this.#failure !== undefined) throw this.#failure;
  }
}

interface OpenFile {
  path: string;
  dest: string | undefined;
  listed: ManifestEntry;
  fd: number | undefined;
  /** Hashed here, or on the hashing thread (its file number there). */
  hash: Hash | number;
  position: number;
  remaining: number;
  pending: number;
  ended: boolean;
  /** Bytes written since the last fdatasync was started. */
  unsynced: number;
  syncing: boolean;
}

/** Checks each tar entry against the manifest and writes the files of one part. */
class PartWriter implements TarVisitor {
  readonly seen: string[] = [];
  /** Destinations written, and those of them already fsynced. */
  readonly written: string[] = [];
  readonly durable = new Set<string>();
  readonly #part: number;
  readonly #what: string;
  readonly #writes: Writes;
  /** Called with each buffer about to hold writes; returns the callback for when one is done. */
  holdBuffer: () => () => void = () => () => {};
  /** The bytes given to data() are in shared memory, so the hashing thread can read them. */
  sharedMemory = false;
  /** Digest checks still running on the hashing thread; each rejects on a mismatch. */
  readonly verdicts: Promise<void>[] = [];
  #file: OpenFile | undefined;
  #openFiles = 0;
  #allClosed: (() => void) | undefined;
  #writtenBytes = 0;

  constructor(part: number, what: string, writes: Writes) {
    this.#part = part;
    this.#what = what;
    this.#writes = writes;
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
      this.written.push(dest);
    }
    const hash = this.sharedMemory && !fromLabel ? threadHashes().start() : createHash('sha256');
    this.#file = { path: name, dest, listed, fd, hash, position: 0, remaining: listed.size!, pending: 0, ended: false, unsynced: 0, syncing: false };
  }

  data(chunk: Buffer): void {
    const file = this.#file;
    if (!file || file.remaining === 0) return;
    const used = file.remaining >= chunk.length ? chunk : chunk.subarray(0, file.remaining);
    if (typeof file.hash !== 'number') file.hash.update(used);
    else if (used.buffer instanceof SharedArrayBuffer) threadHashes().update(file.hash, used, this.holdBuffer());
    else throw new Error(`${this.#what}: ${file.path}: content outside shared memory for the hashing thread`);
    file.remaining -= used.length;
    if (file.fd === undefined) return;
    file.pending++;
    const release = this.holdBuffer();
    this.#writes.submit(file.fd, used, file.position, () => {
      release();
      file.pending--;
      this.#writtenBytes += used.length;
      file.unsynced += used.length;
      this.#syncEarly(file);
      this.#closeWhenDone(file);
    });
    file.position += used.length;
  }

  entryEnd(): void {
    const file = this.#file;
    this.#file = undefined;
    if (!file) return;
    file.ended = true;
    this.#closeWhenDone(file);
    const mismatch = () => integrityError(`backup ${setup.manifestName}: ${file.path} (part ${this.#part}) does not match its SHA-256 in the manifest; the backup is corrupt`);
    if (typeof file.hash === 'number') {
      const verdict = threadHashes()
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
   * decodes, instead of all of it waiting for the final fsync. Such a file is fsynced before it is
   * closed and left out of the list the main thread syncs.
   */
  #syncEarly(file: OpenFile): void {
    if (file.unsynced < syncEvery || file.syncing || file.fd === undefined) return;
    file.syncing = true;
    file.unsynced = 0;
    file.pending++;
    fdatasync(file.fd, (err) => {
      file.syncing = false;
      file.pending--;
      if (err) this.#writes.fail(err);
      this.#closeWhenDone(file);
    });
  }

  #closeWhenDone(file: OpenFile): void {
    if (!file.ended || file.pending > 0 || file.fd === undefined) return;
    const fd = file.fd;
    file.fd = undefined;
    const closeIt = () =>
      close(fd, () => {
        if (--this.#openFiles === 0) this.#allClosed?.();
      });
    if (file.listed.size! < syncEvery) return closeIt();
    fsync(fd, (err) => {
      if (err) this.#writes.fail(err);
      else this.durable.add(file.dest!);
      closeIt();
    });
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

let hashing: ThreadHashes | undefined;
/** This worker's hashing thread, started with the first file that uses it. */
const threadHashes = () => (hashing ??= new ThreadHashes());

/** Every file name seen by this worker (parts never share a file; a repeat within the backup is refused). */
const seenAnywhere = new Set<string>();

type PartMessage = Extract<ToFetchWorker, { type: 'data' | 'end' | 'abort' }>;
/** The parts in progress, each with its own queue of messages. */
const inboxes = new Map<number, Inbox<PartMessage>>();
const running = new Set<Promise<void>>();
let closed: () => void = () => {};
const closing = new Promise<void>((resolve) => (closed = resolve));

port.on('message', (message: ToFetchWorker) => {
  if (message.type === 'part') {
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

async function extractPart(part: number, what: string, inbox: Inbox<PartMessage>): Promise<{ seen: string[]; written: string[] }> {
  const writes = new Writes();
  const writer = new PartWriter(part, what, writes);
  const tar = new TarReader(writer);
  const scratch = Array.from({ length: scratchCount }, () => ({ buffer: Buffer.from(new SharedArrayBuffer(scratchSize)), holds: 0, free: undefined as (() => void) | undefined }));
  let slot = 0;
  let decoder: PayloadDecoder | undefined;
  let head: Buffer = Buffer.alloc(0);
  const asCorrupt = (err: unknown, why: string) => (err instanceof WalshipError || (err as NodeJS.ErrnoException).syscall !== undefined ? err : integrityError(`${what}: ${why} (${(err as Error).message})`, err));

  const drain = async () => {
    for (;;) {
      const s = scratch[slot]!;
      while (s.holds > 0) await new Promise<void>((resolve) => (s.free = resolve));
      let out: Buffer | undefined;
      try {
        out = decoder!.next(s.buffer);
      } catch (err) {
        throw asCorrupt(err, 'corrupt object');
      }
      if (!out) return;
      const inScratch = out.buffer === s.buffer.buffer;
      writer.sharedMemory = inScratch;
      // A buffer of the decoder's own (an lz4 frame, lz4-napi's memory, which V8 does not count
      // and so collects late) is freed as soon as the tar reader and its writes are done with it.
      const own = { holds: 1 };
      const letGo = () => {
        if (--own.holds === 0) releaseBuffer(out);
      };
      writer.holdBuffer = inScratch
        ? () => {
            s.holds++;
            return () => {
              if (--s.holds === 0) s.free?.();
            };
          }
        : () => {
            own.holds++;
            return letGo;
          };
      try {
        tar.push(out);
      } catch (err) {
        throw asCorrupt(err, 'not a valid backup part');
      }
      if (inScratch) slot = (slot + 1) % scratchCount;
      else letGo();
      await writes.below(maxInFlight);
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
          decoder = payloadDecoder(head);
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
      decoder = payloadDecoder(head);
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
    await writes.below(0);
    await writer.settle();
    await writes.below(0);
    await Promise.all(writer.verdicts);
    return { seen: writer.seen, written: writer.written.filter((dest) => !writer.durable.has(dest)) };
  } finally {
    await writes.below(0).catch(() => {});
    await writer.settle();
    send({ type: 'ack', part, bytes: 0, written: writer.takeWrittenBytes() });
  }
}

await closing;
await Promise.all(running);
await hashing?.close();
port.close();
