import { storageError } from '../errors.ts';
import type { ObjectInfo, PutOptions, Storage } from './storage.ts';
import type { Readable } from 'node:stream';

/**
 * Bound every storage call by a deadline, so nothing can hang forever (a dead NFS mount,
 * a server that accepts and never answers). The caller gets a storage error (exit 5).
 */
export function withDeadline(inner: Storage, timeoutMs: number): Storage {
  const bound = <T>(what: string, work: Promise<T>): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(storageError(`storage ${inner.location}: ${what} did not finish within ${timeoutMs / 1000} s`)),
        timeoutMs,
      );
      timer.unref();
    });
    return Promise.race([work, expired]).finally(() => clearTimeout(timer));
  };
  return {
    location: inner.location,
    put: (key: string, body: Readable | Buffer, options?: PutOptions) => bound(`put ${key}`, inner.put(key, body, options)),
    get: (key: string) => bound(`get ${key}`, inner.get(key)),
    head: (key: string): Promise<ObjectInfo | undefined> => bound(`head ${key}`, inner.head(key)),
    list: (prefix: string) => inner.list(prefix),
    delete: (keys: readonly string[]) => bound(`delete`, inner.delete(keys)),
    close: () => inner.close?.() ?? Promise.resolve(),
  };
}
