import type { Readable } from 'node:stream';

/**
 * The repository's object store. Keys are '/'-separated relative paths (no leading '/').
 * Implementations know nothing of PostgreSQL or of the object format.
 */
export interface Storage {
  /** A human-readable location for messages, never containing credentials. */
  readonly location: string;
  /**
   * Store `body` under `key`. Resolves only once the object is durable.
   * With `ifAbsent`, the create is conditional and atomic: if `key` exists, rejects with
   * ObjectExistsError and leaves the stored object untouched.
   * A failed or interrupted put never leaves a partial object visible under `key`.
   */
  put(key: string, body: Readable | Buffer, options?: PutOptions): Promise<void>;
  /** Stream an object's bytes. Rejects with ObjectNotFoundError if absent (one request). */
  get(key: string): Promise<Readable>;
  /** Size and modification time, or undefined if absent. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Every object whose key starts with `prefix`, in pages, in key order per page. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Delete objects; absent keys are not an error. */
  delete(keys: readonly string[]): Promise<void>;
  /** Release connections, timers. */
  close?(): Promise<void>;
}

export interface PutOptions {
  ifAbsent?: boolean;
  /** Expected size when known; lets backends choose single-request vs multipart upload. */
  size?: number;
}

export interface ObjectInfo {
  key: string;
  size: number;
  modified: Date;
}

export class ObjectNotFoundError extends Error {
  readonly key: string;
  constructor(key: string, location: string) {
    super(`no object ${key} in ${location}`);
    this.name = 'ObjectNotFoundError';
    this.key = key;
  }
}

export class ObjectExistsError extends Error {
  readonly key: string;
  constructor(key: string, location: string) {
    super(`object ${key} already exists in ${location}`);
    this.name = 'ObjectExistsError';
    this.key = key;
  }
}

export const isNotFound = (err: unknown): err is ObjectNotFoundError => err instanceof ObjectNotFoundError;
export const isExists = (err: unknown): err is ObjectExistsError => err instanceof ObjectExistsError;
