import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { IdempotencyStrategy, Storage as GcsClient, type Bucket, type File, type StorageOptions } from '@google-cloud/storage';
import type { StorageUrl } from '../config/storage-url.ts';
import { usageError } from '../errors.ts';
import { checkKnownOptions, endpointOption } from './url-options.ts';
import { describe, eachLimited, isTransient, listPrefix, objectName, readHead, statusOf, type RetryPolicy } from './retry.ts';
import { ObjectExistsError, ObjectNotFoundError, type ObjectInfo, type PutOptions, type Storage } from './storage.ts';

const MiB = 1024 * 1024;
const knownOptions = new Set(['endpoint', 'chunkSize']);

export interface GcsSettings {
  /** JSON API endpoint; unset = https://storage.googleapis.com. http:// endpoints (emulators) get no auth. */
  endpoint?: string;
  /** Resumable upload chunk (a multiple of 256 KiB): the memory one upload holds, and the unit retried. */
  chunkSize: number;
}

export function gcsSettings(url: StorageUrl): GcsSettings {
  const o = url.options;
  const where = `storage ${url.display}`;
  checkKnownOptions(url, knownOptions);
  const endpoint = endpointOption(url);
  let chunkSize = 8 * MiB;
  if (o.chunkSize !== undefined) {
    const mib = Number(o.chunkSize);
    if (!Number.isInteger(mib) || mib < 1 || mib > 512) throw usageError(`${where}: option chunkSize: expected MiB between 1 and 512, got '${o.chunkSize}'`);
    chunkSize = mib * MiB;
  }
  return { endpoint, chunkSize };
}

/**
 * Google Cloud Storage through its JSON API. Credentials: Application Default Credentials
 * (GOOGLE_APPLICATION_CREDENTIALS key file, gcloud user credentials, or the metadata server of
 * GCE/GKE/Cloud Run). Never from the URL.
 *
 * Every request runs under our RetryPolicy with the client's own retries off, except the chunks of a
 * resumable upload: the client keeps one chunk in memory and resends it after querying the session's
 * persisted offset, so it retries them itself, with our classification, backoff and deadline.
 */
export class GcsStorage implements Storage {
  readonly location: string;
  readonly prefix: string;
  readonly settings: GcsSettings;
  readonly #bucket: Bucket;
  readonly #uploadBucket: Bucket;
  readonly #policy: RetryPolicy;

  constructor(url: StorageUrl, policy: RetryPolicy, env: NodeJS.ProcessEnv = process.env) {
    this.location = url.display;
    this.prefix = url.prefix;
    this.settings = gcsSettings(url);
    this.#policy = policy;
    const base: StorageOptions = { timeout: policy.attemptTimeoutMs };
    const project = env.GOOGLE_CLOUD_PROJECT ?? env.GCLOUD_PROJECT;
    if (project) base.projectId = project;
    if (this.settings.endpoint) {
      base.apiEndpoint = this.settings.endpoint;
      // Private (https) endpoints still need credentials; plain-http emulators take none.
      base.useAuthWithCustomEndpoint = this.settings.endpoint.startsWith('https:');
    }
    const plain = new GcsClient({ ...base, retryOptions: { autoRetry: false, maxRetries: 0 } });
    const uploads = new GcsClient({
      ...base,
      retryOptions: {
        autoRetry: true,
        maxRetries: policy.maxAttempts - 1,
        retryDelayMultiplier: 2,
        // The client's backoff starts at 1 s; its cap must not be below that.
        maxRetryDelay: Math.max(1, policy.maxDelayMs / 1000),
        totalTimeout: policy.deadlineMs / 1000,
        idempotencyStrategy: IdempotencyStrategy.RetryAlways,
        retryableErrorFn: (err) => {
          const transient = isTransient(err);
          if (transient) policy.log(`storage ${this.location}: upload request failed (${describe(err)}); the client resends it`);
          return transient;
        },
      },
    });
    this.#bucket = plain.bucket(url.bucket);
    this.#uploadBucket = uploads.bucket(url.bucket);
  }

  #file(key: string, generation?: string | number): File {
    const name = objectName(this.prefix, key);
    return generation === undefined ? this.#bucket.file(name) : this.#bucket.file(name, { generation });
  }

  async put(key: string, body: Readable | Buffer, options: PutOptions = {}): Promise<void> {
    const name = objectName(this.prefix, key);
    const preconditionOpts = options.ifAbsent ? { ifGenerationMatch: 0 } : undefined;
    const exists = (err: unknown) => (options.ifAbsent && statusOf(err) === 412 ? new ObjectExistsError(key, this.location) : err);
    const chunkSize = this.settings.chunkSize;
    let head: Buffer;
    let rest: AsyncIterator<Buffer> | undefined;
    if (Buffer.isBuffer(body)) head = body;
    else {
      const read = await readHead(body, chunkSize);
      head = read.head;
      if (!read.done) rest = read.rest;
    }
    if (!rest && head.length <= 4 * chunkSize) {
      // Fits in memory already: one simple (multipart) upload, retried whole on a transient failure.
      await this.#policy.run(`put ${key}`, async () => {
        try {
          await this.#bucket.file(name).save(head, {
            resumable: false,
            validation: false,
            preconditionOpts,
            metadata: { contentType: 'application/octet-stream' },
          });
        } catch (err) {
          throw exists(err);
        }
      });
      return;
    }
    // Larger: a resumable upload in chunks; the object exists only once the last chunk is in.
    const source = Readable.from(
      (async function* () {
        yield head;
        if (rest) for (let step = await rest.next(); !step.done; step = await rest.next()) yield step.value;
      })(),
      { objectMode: false },
    );
    await this.#policy.run(
      `put ${key}`,
      async (signal) => {
        const target = this.#uploadBucket.file(name).createWriteStream({
          resumable: true,
          chunkSize,
          validation: false,
          preconditionOpts,
          metadata: { contentType: 'application/octet-stream' },
        });
        try {
          await pipeline(source, target, { signal });
        } catch (err) {
          throw exists(err);
        }
      },
      { replayable: false, attemptTimeoutMs: 0 },
    );
  }

  async get(key: string): Promise<Readable> {
    const open = (file: File, offset: number, signal: AbortSignal) =>
      new Promise<{ stream: Readable; size?: number; generation?: string }>((resolve, reject) => {
        const stream = file.createReadStream({ validation: false, decompress: false, ...(offset ? { start: offset } : {}) }) as Readable;
        const onAbort = () => stream.destroy(signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
        const settle = () => signal.removeEventListener('abort', onAbort);
        stream.once('response', (res: { statusCode?: number; headers: Record<string, string | undefined> }) => {
          if ((res.statusCode ?? 500) >= 300) return; // the error event follows with the API's message
          settle();
          const length = Number(res.headers['content-length']);
          resolve({ stream, size: Number.isFinite(length) && offset === 0 ? length : undefined, generation: res.headers['x-goog-generation'] });
        });
        stream.once('error', (err) => {
          settle();
          reject(err);
        });
        stream.read(0); // the client starts the request on the first read
      });
    const first = await this.#policy.run(`get ${key}`, async (signal) => {
      try {
        return await open(this.#file(key), 0, signal);
      } catch (err) {
        if (statusOf(err) === 404 && (await this.#objectMissing(err, key))) throw new ObjectNotFoundError(key, this.location);
        throw err;
      }
    });
    // Resume pinned to the generation first read: a replaced object fails (404) instead of mixing.
    return this.#policy.resumingRead(`get ${key}`, first.stream, first.size, async (offset, signal) => {
      return (await open(this.#file(key, first.generation), offset, signal)).stream;
    });
  }

  /**
   * A 404 on a read means "no such object" only if the bucket exists: a missing bucket (a typo, a
   * deleted bucket) must be a storage error, never "not found", which would end recovery early. GCS
   * says "No such object: ..." for a missing object; any other 404 is checked with a one-object
   * listing (storage.objects.list, which walship needs anyway), which fails with 404 without the bucket.
   */
  async #objectMissing(err: unknown, key: string): Promise<boolean> {
    if (/No such object/i.test(String((err as Error).message))) return true;
    try {
      await this.#bucket.getFiles({ prefix: objectName(this.prefix, key), maxResults: 1, autoPaginate: false });
      return true;
    } catch (listErr) {
      if (statusOf(listErr) === 404) return false;
      throw listErr;
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const file = this.#file(key);
    return this.#policy.run(`head ${key}`, async () => {
      try {
        const [metadata] = await file.getMetadata();
        return { key, size: Number(metadata.size ?? 0), modified: new Date(metadata.updated ?? metadata.timeCreated ?? 0) };
      } catch (err) {
        if (statusOf(err) === 404) return undefined;
        throw err;
      }
    });
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const full = listPrefix(this.prefix, prefix);
    const strip = this.prefix ? this.prefix.length + 1 : 0;
    let pageToken: string | undefined;
    do {
      const [files, next] = await this.#policy.run(`list ${prefix || '(all)'}`, async () => {
        const [found, nextQuery] = await this.#bucket.getFiles({ prefix: full, maxResults: 1000, autoPaginate: false, ...(pageToken ? { pageToken } : {}) });
        return [found, nextQuery as { pageToken?: string } | null] as const;
      });
      for (const file of files) {
        const m = file.metadata;
        yield { key: file.name.slice(strip), size: Number(m.size ?? 0), modified: new Date(m.updated ?? m.timeCreated ?? 0) };
      }
      pageToken = next?.pageToken || undefined;
    } while (pageToken);
  }

  async delete(keys: readonly string[]): Promise<void> {
    await eachLimited(keys, 8, async (key) => {
      const file = this.#file(key);
      await this.#policy.run(`delete ${key}`, async () => {
        await file.delete({ ignoreNotFound: true });
      });
    });
  }
}
