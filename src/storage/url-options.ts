import type { StorageUrl } from '../config/storage-url.ts';
import { usageError } from '../errors.ts';

/** How cloud backends name their URL in messages. */
export const where = (url: StorageUrl) => `storage ${url.display}`;

/** Refuse query options a backend does not know (a typo must not be ignored silently). */
export function checkKnownOptions(url: StorageUrl, known: ReadonlySet<string>): void {
  for (const name of Object.keys(url.options)) {
    if (!known.has(name)) throw usageError(`${where(url)}: unknown option '${name}' for ${url.scheme}:// (known: ${[...known].join(', ')})`);
  }
}

/**
 * The `endpoint` URL option (S3-compatible stores, emulators, private endpoints): http(s) only,
 * without credentials or query (a SAS token or key there would end up in messages).
 */
export function endpointOption(url: StorageUrl): string | undefined {
  const text = url.options.endpoint;
  if (text === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(text);
  } catch {
    throw usageError(`${where(url)}: option endpoint: not a URL: '${text}'`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw usageError(`${where(url)}: option endpoint: expected http:// or https://`);
  if (parsed.username || parsed.password || parsed.search) {
    throw usageError(`${where(url)}: option endpoint: credentials and tokens do not belong in the URL`);
  }
  return parsed.toString().replace(/\/+$/, '');
}
