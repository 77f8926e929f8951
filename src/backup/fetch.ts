import { chmod, mkdir, open, readdir, readFile, rename, rm, symlink } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { ownsMemory, releaseBuffer } from '../buffers.ts';
import { decryptedObject, type Encryption } from '../codec/codec.ts';
import { integrityError, refusedError, usageError, WalshipError } from '../errors.ts';
import { syncDirectory } from '../fsutil.ts';
import { workerUrl } from '../worker-url.ts';
import { forEachConcurrently } from '../pool.ts';
import { log } from '../log.ts';
import { controlFilePath, parseControlFile } from '../pg/control-file.ts';
import { keys, readRepositoryInfo } from '../repository.ts';
import { isNotFound, type Storage } from '../storage/storage.ts';
import { resolveBackup } from './catalog.ts';
import { controlTemp, fromManifest, Layout, type TablespacePlan } from './layout.ts';
import { readManifest, type BackupManifest } from './manifest.ts';
import { workerError, type FetchWorkerData, type FromFetchWorker, type ToFetchWorker } from './workers.ts';
import { formatBytes, mibPerSecond, startProgress, type Progress } from './progress.ts';

export interface BackupFetchOptions {
  storage: Storage;
  encryption: Encryption | undefined;
  /** A backup name or LATEST. */
  backup: string;
  /** Empty (or absent) directory to lay the backup into. */
  target: string;
  /** Tablespace locations to move: old location → new location. */
  tablespaceMap?: ReadonlyMap<string, string>;
  downloadConcurrency: number;
  /** Already read by the caller (restore). */
  manifest?: BackupManifest;
}

/**
 * Lay a base backup into an empty directory: every part downloaded, decoded and unpacked in
 * parallel, every file checked against its SHA-256 in the manifest, nothing outside the target
 * (and the tablespace locations) ever written. global/pg_control is put in place last, after
 * everything is verified and fsynced, so a failed fetch can never be started. On failure the
 * target is emptied again.
 */
export async function fetchBackup(options: BackupFetchOptions): Promise<BackupManifest> {
  const started = Date.now();
  // The worker threads start now, while the manifest is read and the target prepared: each takes
  // ~35 ms to start, and its hashing thread as long.
  const count = Math.max(1, Math.min(options.downloadConcurrency, availableParallelism(), options.manifest?.parts.length ?? Infinity));
  const workers = Array.from({ length: count }, () => new FetchWorker());
  try {
    return await fetchWith(workers, options, started);
  } finally {
    await Promise.all(workers.map((w) => w.close()));
  }
}

async function fetchWith(workers: FetchWorker[], options: BackupFetchOptions, started: number): Promise<BackupManifest> {
  const { storage } = options;
  const manifest = options.manifest ?? (await readManifest(storage, (await resolveBackup(storage, options.encryption, options.backup)).name, options.encryption));
  const repository = await readRepositoryInfo(storage);
  if (repository && repository.systemIdentifier !== manifest.systemIdentifier) {
    throw refusedError(
      `backup ${manifest.name} is of database system ${manifest.systemIdentifier}, but repository ${storage.location} belongs to ${repository.systemIdentifier}; refusing to restore a backup of another cluster`,
    );
  }
  const target = resolve(options.target);
  if (process.getuid?.() === 0) log.warn('running as root: the restored files will belong to root; PostgreSQL refuses to start on them until they are chowned to the server user (run walship as that user instead)');
  const tablespaces = planTablespaces(manifest, options.tablespaceMap ?? new Map());
  const createdRoot = await prepareEmptyDirectory(target, 'target directory');
  for (const t of tablespaces) t.created = await prepareEmptyDirectory(t.location, `tablespace ${t.oid} location`);

  const layout = new Layout(target, tablespaces);
  let progress: Progress | undefined;
  try {
    for (const dir of manifest.files.filter((f) => f.type === 'dir').sort((a, b) => a.path.length - b.path.length)) {
      const dest = layout.destination(dir.path);
      await mkdir(dest, { recursive: true, mode: 0o700 });
      await chmod(dest, 0o700);
    }
    progress = await startProgress(`fetch ${manifest.name}`, manifest.size);
    const extractor = new Extractor(options, manifest, layout, progress, workers);
    await extractor.run();
    progress.stop();

    const missing = manifest.files.filter((f) => f.type === 'file' && !fromManifest.has(f.path) && !extractor.seen.has(f.path));
    if (missing.length > 0) {
      throw integrityError(`backup ${manifest.name}: ${missing.length} file(s) missing from their parts, e.g. ${missing[0]!.path} (part ${missing[0]!.part})`);
    }
    await checkControlFile(target, manifest);

    await writeDurable(join(target, 'backup_label'), manifest.backupLabel);
    if (manifest.tablespaceMap) await writeDurable(join(target, 'tablespace_map'), remapTablespaceMap(manifest.tablespaceMap, tablespaces));
    for (const link of manifest.files.filter((f) => f.type === 'symlink')) await symlink(link.target!, layout.destination(link.path));
    for (const t of tablespaces) await symlink(t.location, join(target, 'pg_tblspc', t.oid));
    const dirs = manifest.files.filter((f) => f.type === 'dir').map((f) => layout.destination(f.path));
    for (const dir of [...dirs.sort((a, b) => b.length - a.length), ...tablespaces.map((t) => t.location), target]) await syncDirectory(dir);
    await rename(join(target, controlTemp), join(target, controlFilePath));
    await syncDirectory(join(target, 'global'));
  } catch (err) {
    progress?.stop();
    await removeContents(target, createdRoot);
    for (const t of tablespaces) await removeContents(t.location, t.created);
    throw localWriteError(err, target);
  }
  const ms = Date.now() - started;
  log.info(`backup ${manifest.name} fetched into ${target}: ${formatBytes(manifest.size)} in ${(ms / 1000).toFixed(1)} s (${mibPerSecond(manifest.size, ms)} MiB/s), every file verified`);
  return manifest;
}

function planTablespaces(manifest: BackupManifest, mapping: ReadonlyMap<string, string>): TablespacePlan[] {
  const known = new Set(manifest.tablespaces.map((t) => t.location));
  for (const [from, to] of mapping) {
    if (!known.has(from)) {
      throw usageError(`--tablespace-map ${from}=${to}: backup ${manifest.name} has no tablespace at ${from} (it has: ${[...known].join(', ') || 'none'})`);
    }
    if (!isAbsolute(to)) throw usageError(`--tablespace-map ${from}=${to}: the new location must be an absolute path`);
  }
  return manifest.tablespaces.map((t) => ({ oid: t.oid, original: t.location, location: resolve(mapping.get(t.location) ?? t.location), created: false }));
}

/** Make sure `dir` is an empty directory (creating it, mode 0700, if absent). Returns whether it was created. */
async function prepareEmptyDirectory(dir: string, what: string): Promise<boolean> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      return true;
    }
    if (code === 'ENOTDIR') throw refusedError(`${what} ${dir} is not a directory`);
    throw usageError(`${what} ${dir}: ${(err as Error).message}`);
  }
  if (entries.length > 0) throw refusedError(`${what} ${dir} is not empty; backup-fetch and restore only write into an empty directory`);
  await chmod(dir, 0o700);
  return false;
}

async function removeContents(dir: string, removeDir: boolean): Promise<void> {
  try {
    if (removeDir) {
      await rm(dir, { recursive: true, force: true });
      return;
    }
    for (const name of await readdir(dir)) await rm(join(dir, name), { recursive: true, force: true });
  } catch (err) {
    log.warn('could not clean up after the failed fetch', { dir, reason: (err as Error).message });
  }
}

/**
 * Lays the parts into the target: `downloadConcurrency` parts at once, each streamed from storage
 * (and decrypted) here and unpacked by a worker thread; one worker per core at most, each taking
 * its share of the parts (a worker per part would cost a V8 heap each for a cloud restore with
 * many downloads in flight).
 */
class Extractor {
  readonly seen = new Set<string>();
  readonly #o: BackupFetchOptions;
  readonly #manifest: BackupManifest;
  readonly #layout: Layout;
  readonly #progress: Progress;
  readonly #workers: FetchWorker[];
  #failure: unknown;

  constructor(options: BackupFetchOptions, manifest: BackupManifest, layout: Layout, progress: Progress, workers: FetchWorker[]) {
    this.#o = options;
    this.#manifest = manifest;
    this.#layout = layout;
    this.#progress = progress;
    this.#workers = workers;
  }

  async run(): Promise<void> {
    const parts = this.#manifest.parts.map((p) => p.number).sort((a, b) => a - b);
    const data: FetchWorkerData = {
      target: this.#layout.target,
      tablespaces: this.#layout.tablespaces,
      files: this.#manifest.files,
      manifestName: this.#manifest.name,
      backupLabel: this.#manifest.backupLabel,
      tablespaceMap: this.#manifest.tablespaceMap ?? '',
    };
    const streams = Math.max(1, Math.min(this.#o.downloadConcurrency, parts.length));
    const workers = this.#workers;
    for (const w of workers) w.begin(data, this.#progress);
    const load = new Map(workers.map((w) => [w, 0]));
    const extract = async (part: number) => {
      if (this.#failure !== undefined) return;
      // The least busy worker, counted from the moment it is chosen (the part's download starts
      // before the worker hears of it); parts differ in size, so a fixed assignment would leave one idle.
      const worker = workers.reduce((a, b) => (load.get(b)! < load.get(a)! ? b : a));
      load.set(worker, load.get(worker)! + 1);
      try {
        const result = await this.#part(worker, part);
        for (const path of result.seen) this.seen.add(path);
      } catch (err) {
        if (this.#failure === undefined) {
          this.#failure = err;
          for (const w of workers) w.abort();
        }
      } finally {
        load.set(worker, load.get(worker)! - 1);
      }
    };
    await forEachConcurrently(parts, streams, extract);
    // They exit while the last steps run; fetchBackup waits for them.
    for (const w of workers) void w.close();
    if (this.#failure !== undefined) throw this.#failure;
  }

  async #part(worker: FetchWorker, part: number): Promise<{ seen: string[] }> {
    const { storage } = this.#o;
    const key = keys.backupPart(this.#manifest.name, part);
    const what = `${storage.location}/${key}`;
    let object: Readable;
    try {
      object = await storage.get(key);
    } catch (err) {
      if (isNotFound(err)) throw integrityError(`backup ${this.#manifest.name} is damaged: part ${part} (${key}) is missing from ${storage.location}`);
      throw err;
    }
    try {
      return await worker.extract(part, what, decryptedObject(object, this.#o.encryption, what));
    } finally {
      object.destroy();
    }
  }
}

/** The parts one worker is laying down: how much of each is sent and not yet decoded, and how each ends. */
interface PartFlow {
  unacked: number;
  wake: (() => void) | undefined;
  settle: (result: FromFetchWorker | Error) => void;
}

/** One worker thread (fetch-worker.ts) and the flow of the parts it is given. */
class FetchWorker {
  readonly #worker: Worker;
  #progress: Progress | undefined;
  readonly #parts = new Map<number, PartFlow>();
  readonly #exited: Promise<void>;
  #closing: Promise<void> | undefined;
  #gone: Error | undefined;

  constructor() {
    this.#worker = new Worker(workerUrl('fetch-worker', import.meta.url));
    this.#worker.on('message', (message: FromFetchWorker) => {
      const flow = this.#parts.get(message.part);
      if (!flow) return;
      if (message.type === 'ack') {
        flow.unacked -= message.bytes;
        this.#progress?.add(message.written);
        wakeUp(flow);
      } else flow.settle(message);
    });
    this.#worker.on('error', (err) => {
      for (const flow of this.#parts.values()) flow.settle(err);
    });
    this.#exited = new Promise((resolve) =>
      this.#worker.once('exit', () => {
        this.#gone = new Error('backup-fetch worker thread exited unexpectedly');
        for (const flow of this.#parts.values()) flow.settle(this.#gone);
        resolve();
      }),
    );
  }

  /** What the worker needs to know of the backup and the target, before its first part. */
  begin(data: FetchWorkerData, progress: Progress): void {
    this.#progress = progress;
    this.#worker.postMessage({ type: 'setup', setup: data } satisfies ToFetchWorker);
  }

  /** Stream one part's bytes to the worker; resolves with what it laid down, rejects with its failure. */
  async extract(part: number, what: string, bytes: AsyncIterable<Buffer>): Promise<{ seen: string[] }> {
    if (this.#gone) throw this.#gone;
    let outcome: FromFetchWorker | Error | undefined;
    let settled!: (result: FromFetchWorker | Error) => void;
    const ended = new Promise<FromFetchWorker | Error>((resolve) => (settled = resolve));
    const flow: PartFlow = {
      unacked: 0,
      wake: undefined,
      settle: (result) => {
        outcome ??= result;
        wakeUp(flow);
        settled(result);
      },
    };
    this.#parts.set(part, flow);
    try {
      this.#worker.postMessage({ type: 'part', part, what } satisfies ToFetchWorker);
      let batch: Buffer[] = [];
      let size = 0;
      const flush = () => {
        // A buffer of its own, so it can be transferred (moved, not copied) to the worker; the
        // pieces gathered into it are freed now, not when V8 next collects.
        const chunk = batch.length === 1 && ownsMemory(batch[0]!) ? batch[0]! : Buffer.concat(batch, size);
        if (chunk !== batch[0]) batch.forEach(releaseBuffer);
        this.#worker.postMessage({ type: 'data', part, chunk } satisfies ToFetchWorker, ownsMemory(chunk) ? [chunk.buffer as ArrayBuffer] : []);
        flow.unacked += size;
        batch = [];
        size = 0;
      };
      for await (const chunk of bytes) {
        if (outcome) break;
        batch.push(chunk);
        size += chunk.length;
        if (size >= batchSize) flush();
        while (flow.unacked > maxUnacked && !outcome) await new Promise<void>((resolve) => (flow.wake = resolve));
      }
      if (!outcome) {
        if (size > 0) flush();
        this.#worker.postMessage({ type: 'end', part } satisfies ToFetchWorker);
      }
      const result = await ended;
      if (result instanceof Error) throw result;
      if (result.type === 'failed') throw workerError(result.error);
      if (result.type !== 'done') throw new Error(`unexpected message from a backup-fetch worker: ${result.type}`);
      return result;
    } finally {
      this.#parts.delete(part);
    }
  }

  abort(): void {
    this.#worker.postMessage({ type: 'abort' } satisfies ToFetchWorker);
  }

  /** Let the worker finish and exit; the same promise for every call. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#worker.postMessage({ type: 'close' } satisfies ToFetchWorker);
      const timer = setTimeout(() => void this.#worker.terminate(), 10_000);
      await this.#exited;
      clearTimeout(timer);
    })();
    return this.#closing;
  }
}

function wakeUp(flow: PartFlow): void {
  const wake = flow.wake;
  flow.wake = undefined;
  wake?.();
}

/** Stored bytes sent to a worker at a time, and at most this many not yet decoded. */
const batchSize = 1024 * 1024;
const maxUnacked = 4 * batchSize;

/** A failure of the local disk (full, read-only, permissions) as one clear line; walship's own errors pass unchanged. */
function localWriteError(err: unknown, target: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (err instanceof WalshipError || typeof code !== 'string') return err;
  const reasons: Record<string, string> = {
    ENOSPC: 'no space left on device',
    EDQUOT: 'disk quota exceeded',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    EIO: 'I/O error',
    EFBIG: 'file too large',
  };
  const path = (err as NodeJS.ErrnoException).path;
  return usageError(`cannot write ${path ?? target}: ${reasons[code] ?? (err as Error).message}; the target was emptied again`);
}

async function checkControlFile(target: string, manifest: BackupManifest): Promise<void> {
  const bytes = await readFile(join(target, controlTemp)).catch(() => undefined);
  if (!bytes) throw integrityError(`backup ${manifest.name}: ${controlFilePath} is missing`);
  const control = parseControlFile(bytes);
  if (!control || control.systemIdentifier.toString() !== manifest.systemIdentifier) {
    throw integrityError(`backup ${manifest.name}: ${controlFilePath} does not belong to database system ${manifest.systemIdentifier}`);
  }
}

async function writeDurable(path: string, text: string): Promise<void> {
  const handle = await open(path, 'wx', 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * tablespace_map lines are "<oid> <path>", the path with '\', CR and LF backslash-escaped
 * (PostgreSQL 15+; earlier versions wrote paths as they are). Moved tablespaces get their new path.
 */
export function remapTablespaceMap(text: string, tablespaces: readonly { oid: string; original: string; location: string }[]): string {
  const moved = new Map(tablespaces.filter((t) => t.original !== t.location).map((t) => [t.oid, t.location]));
  if (moved.size === 0) return text;
  // Records end at an unescaped newline (an escaped one belongs to a path).
  const records: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\\' && i + 1 < text.length) current += c + text[++i];
    else if (c === '\n') {
      records.push(current);
      current = '';
    } else current += c;
  }
  const trailing = current;
  const remapped = records.map((record) => {
    const m = /^(\d+) /.exec(record);
    const to = m ? moved.get(m[1]!) : undefined;
    return to === undefined ? record : `${m![1]} ${to.replace(/[\\\r\n]/g, (c) => `\\${c}`)}`;
  });
  return `${remapped.map((r) => `${r}\n`).join('')}${trailing}`;
}

