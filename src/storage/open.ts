import type { StorageUrl } from '../config/storage-url.ts';
import { usageError } from '../errors.ts';
import type { Storage } from './storage.ts';
import { withDeadline } from './deadline.ts';

export interface StorageOptions {
  /** Seconds one operation may take, retries included. */
  timeoutSeconds: number;
}

/**
 * Open the repository's storage backend. Each backend module (and its cloud SDK) is imported
 * only when its scheme is used, so `wal-push` to file:// loads no SDK.
 */
export async function openStorage(url: StorageUrl, options: StorageOptions): Promise<Storage> {
  let backend: Storage;
  switch (url.scheme) {
    case 'file': {
      const { FileStorage } = await import('./file.ts');
      backend = new FileStorage(url.path);
      break;
    }
    case 's3':
    case 'gs':
    case 'azure':
      throw usageError(`storage ${url.display}: the ${url.scheme}:// backend is not available yet in this version of walship`);
  }
  return withDeadline(backend, options.timeoutSeconds * 1000);
}
