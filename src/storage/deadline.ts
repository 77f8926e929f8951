import { storageError } from '../errors.ts';
import type { ObjectInfo, PutOptions, Storage } from './storage.ts';
import type { Readable } from 'node:stream';

/**
 * Bound every storage call by a deadline, so nothing can hang forever (a dead NFS mount,
 * a server that accepts and never answers). The caller gets a storage error (exit 5).
 * A listing is bounded page by page (each step of the iterator), not as a whole.
 */
export function withDeadline(inner: Storage, timeoutMs: number): Storage {
  const bound = <T>(what: string, work: Promise<T>): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(storageError(`storage ${inner.location}: ${what} did not finish within ${Math.round(timeoutMs / 100) / 10} s`)),
        timeoutMs,
      );
      timer.unref();
    });
    work.catch(() => {});
    return Promise.race([work, expired]).finally(() => clearTimeout(timer));
  };
  async function* list(prefix: string): AsyncGenerator<ObjectInfo> {
    const iterator = inner.list(prefix)[Symbol.asyncIterator]();
    try {
      for (;;) {
        const step = await bound(`list ${prefix || '(all)'}`, iterator.next());
        if (step.done) return;
        yield step.value;
      }
    } finally {
      // Release the inner listing when the caller stops early; not awaited, since after a timeout
      // the inner step may still be pending and a generator's return() waits for it.
      iterator.return?.()?.catch(() => {});
    }
  }
  return {
    location: inner.location,
    put: (key: string, body: Readable | Buffer, options?: PutOptions) => bound(`put ${key}`, inner.put(key, body, options)),
    get: (key: string) => bound(`get ${key}`, inner.get(key)),
    head: (key: string): Promise<ObjectInfo | undefined> => bound(`head ${key}`, inner.head(key)),
    list,
    delete: (keys: readonly string[]) => bound(`delete`, inner.delete(keys)),
    close: () => inner.close?.() ?? Promise.resolve(),
  };
}
