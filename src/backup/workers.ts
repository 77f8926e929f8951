/**
 * backup-fetch's worker threads (fetch-worker.ts: decompress, untar, hash and write one part at a
 * time): their messages and the helpers both sides use. Storage and decryption stay on the main
 * thread.
 */
import { WalshipError, type ExitCodeValue } from '../errors.ts';
import type { ManifestEntry } from './manifest.ts';

/** What a worker is told of the backup and the target (its 'setup' message). */
export interface FetchWorkerData {
  target: string;
  tablespaces: { oid: string; location: string }[];
  /** The manifest's entries (files, directories, links). */
  files: ManifestEntry[];
  manifestName: string;
  backupLabel: string;
  tablespaceMap: string;
}

/** To a worker, which may be laying down several parts at once: part messages name their part. */
export type ToFetchWorker =
  /** First of all: the backup and the target (the worker starts before the manifest is read). */
  | { type: 'setup'; setup: FetchWorkerData }
  | { type: 'part'; part: number; what: string }
  /** The part's stored bytes, decrypted, in order; the buffer is transferred. */
  | { type: 'data'; part: number; chunk: Uint8Array }
  | { type: 'end'; part: number }
  /** Stop every part in progress (another part failed). */
  | { type: 'abort' }
  | { type: 'close' };

export type FromFetchWorker =
  /** `bytes` of the part's input consumed; `written` more bytes of files handed to the disk. */
  | { type: 'ack'; part: number; bytes: number; written: number }
  /** The part is laid down: its files written, verified and fsynced. */
  | { type: 'done'; part: number; seen: string[] }
  | { type: 'failed'; part: number; error: WorkerFailure };

/** An error as it crosses threads: walship's own with its exit code, a system one with its errno fields. */
export interface WorkerFailure {
  message: string;
  exitCode?: ExitCodeValue;
  code?: string | undefined;
  syscall?: string | undefined;
  path?: string | undefined;
}

export function describeFailure(err: unknown): WorkerFailure {
  if (err instanceof WalshipError) return { message: err.message, exitCode: err.exitCode };
  const e = err as NodeJS.ErrnoException;
  return { message: e?.message ?? String(err), code: e?.code, syscall: e?.syscall, path: e?.path };
}

/** A worker's failure as the error it was on the other side. */
export function workerError(failure: WorkerFailure): Error {
  if (failure.exitCode !== undefined) return new WalshipError(failure.exitCode, failure.message);
  return Object.assign(new Error(failure.message), { code: failure.code, syscall: failure.syscall, path: failure.path });
}

/** Messages as an async queue, for a worker's loop. */
export class Inbox<T> {
  #queue: T[] = [];
  #waiting: ((m: T) => void) | undefined;

  put(message: T): void {
    if (this.#waiting) {
      const resolve = this.#waiting;
      this.#waiting = undefined;
      resolve(message);
    } else this.#queue.push(message);
  }

  next(): Promise<T> {
    if (this.#queue.length > 0) return Promise.resolve(this.#queue.shift()!);
    return new Promise((resolve) => (this.#waiting = resolve));
  }
}
