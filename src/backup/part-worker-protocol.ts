/** Messages between backup-fetch (main thread) and its part workers (part-worker.ts). */
import type { ExitCodeValue } from '../errors.ts';
import type { ManifestEntry } from './manifest.ts';

export interface PartWorkerData {
  target: string;
  tablespaces: { oid: string; location: string }[];
  /** The manifest's entries (files, directories, links). */
  files: ManifestEntry[];
  manifestName: string;
  backupLabel: string;
  tablespaceMap: string;
}

export type ToWorker =
  | { type: 'part'; part: number; what: string }
  /** The part's stored bytes, decrypted, in order; the buffer is transferred. */
  | { type: 'data'; chunk: Uint8Array }
  | { type: 'end' }
  | { type: 'abort' }
  | { type: 'close' };

export type FromWorker =
  /** `bytes` of input consumed; `written` more bytes of files handed to the disk. */
  | { type: 'ack'; bytes: number; written: number }
  | { type: 'done'; part: number; seen: string[]; written: string[] }
  | { type: 'failed'; part: number; error: WorkerFailure };

/** An error as it crosses threads: walship's own with its exit code, a system one with its errno fields. */
export interface WorkerFailure {
  message: string;
  exitCode?: ExitCodeValue;
  code?: string | undefined;
  syscall?: string | undefined;
  path?: string | undefined;
}
