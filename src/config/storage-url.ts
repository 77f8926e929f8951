import { usageError } from '../errors.ts';

export type StorageScheme = 'file' | 's3' | 'gs' | 'azure';

/** A parsed repository URL. Credentials never live here (each SDK's default chain supplies them). */
export interface StorageUrl {
  scheme: StorageScheme;
  /** file: absolute directory path. */
  path: string;
  /** s3/gs: bucket; azure: container. Empty for file. */
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing '/'. Empty for file. */
  prefix: string;
  /** Query options: endpoint, region, pathStyle, account, sse, kmsKeyId, storageClass, ... */
  options: Record<string, string>;
  /** The URL as given, minus any query values, for messages. */
  display: string;
}

const schemes: Record<string, StorageScheme> = { 'file:': 'file', 's3:': 's3', 'gs:': 'gs', 'azure:': 'azure' };

export function parseStorageUrl(text: string, setting = 'storage'): StorageUrl {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw usageError(`${setting}: not a URL: '${text}' (expected file:///path, s3://bucket/prefix, gs://bucket/prefix or azure://container/prefix)`);
  }
  const scheme = schemes[url.protocol];
  if (!scheme) {
    throw usageError(`${setting}: unsupported scheme '${url.protocol}' (expected file://, s3://, gs:// or azure://)`);
  }
  if (url.username || url.password) {
    throw usageError(`${setting}: credentials do not belong in the storage URL; use the cloud SDK's own environment or profile`);
  }
  const options: Record<string, string> = {};
  for (const [key, value] of url.searchParams) options[key] = value;
  const display = `${url.protocol}//${url.host}${url.pathname}`;
  if (scheme === 'file') {
    if (url.host !== '' && url.host !== 'localhost') {
      throw usageError(`${setting}: file:// URLs take an absolute path (file:///backups/pg), not a host '${url.host}'`);
    }
    const path = decodeURIComponent(url.pathname).replace(/\/+$/, '') || '/';
    return { scheme, path, bucket: '', prefix: '', options, display };
  }
  const bucket = url.host;
  if (!bucket) throw usageError(`${setting}: ${scheme}:// URL needs a ${scheme === 'azure' ? 'container' : 'bucket'} name`);
  const prefix = decodeURIComponent(url.pathname).replace(/^\/+|\/+$/g, '');
  return { scheme, path: '', bucket, prefix, options, display };
}
