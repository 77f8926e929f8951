import type { StorageUrl } from '../config/storage-url.ts';
import type { Storage } from './storage.ts';
import { withDeadline } from './deadline.ts';
import { RetryPolicy, type RetryOptions } from './retry.ts';

export interface StorageOptions {
  /** Seconds one operation may take, retries included (setting storageTimeout). */
  timeoutSeconds: number;
  /** Seconds one request may go without an answer before it is retried; default min(60, timeoutSeconds). */
  attemptTimeoutSeconds?: number;
  /** Debug lines (each retry); default: stderr when WALSHIP_LOG_LEVEL=debug. */
  log?: (line: string) => void;
  /** Where credentials are read from; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Backoff tuning (tests, benchmarks); defaults in RetryPolicy. */
  retry?: Pick<RetryOptions, 'maxAttempts' | 'baseDelayMs' | 'maxDelayMs'>;
}

/**
 * Open the repository's storage backend. Each backend module (and its cloud SDK) is imported
 * only when its scheme is used, so `wal-push` to file:// loads no SDK.
 *
 * Cloud backends run every request under one RetryPolicy (src/storage/retry.ts): per-request
 * timeouts, jittered backoff, the operation deadline. withDeadline stays outside as a last guard
 * (a little later than the policy's own deadline, so the policy's clearer message normally wins).
 */
export async function openStorage(url: StorageUrl, options: StorageOptions): Promise<Storage> {
  const deadlineMs = options.timeoutSeconds * 1000;
  const policy = () =>
    new RetryPolicy({
      location: url.display,
      deadlineMs,
      attemptTimeoutMs: options.attemptTimeoutSeconds !== undefined ? options.attemptTimeoutSeconds * 1000 : undefined,
      log: options.log,
      ...options.retry,
    });
  const env = options.env ?? process.env;
  let backend: Storage;
  let grace = 0;
  switch (url.scheme) {
    case 'file': {
      const { FileStorage } = await import('./file.ts');
      backend = new FileStorage(url.path);
      break;
    }
    case 's3': {
      const { S3Storage } = await import('./s3.ts');
      backend = new S3Storage(url, policy(), env);
      grace = 1000;
      break;
    }
    case 'gs': {
      const { GcsStorage } = await import('./gcs.ts');
      backend = new GcsStorage(url, policy(), env);
      grace = 1000;
      break;
    }
    case 'azure': {
      const { AzureStorage } = await import('./azure.ts');
      backend = new AzureStorage(url, policy(), env);
      grace = 1000;
      break;
    }
  }
  return withDeadline(backend, deadlineMs + grace);
}
