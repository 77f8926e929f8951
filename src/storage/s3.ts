import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type PutObjectCommandInput,
  type S3ClientConfig,
  type ServerSideEncryption,
  type StorageClass,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { StorageUrl } from '../config/storage-url.ts';
import { storageError, usageError } from '../errors.ts';
import { checkKnownOptions, endpointOption } from './url-options.ts';
import { listPrefix, objectName, optionOff, optionOn, statusOf, type RetryPolicy } from './retry.ts';
import { ObjectExistsError, ObjectNotFoundError, type ObjectInfo, type PutOptions, type Storage } from './storage.ts';

const MiB = 1024 * 1024;
const knownOptions = new Set(['endpoint', 'region', 'pathStyle', 'sse', 'kmsKeyId', 'storageClass', 'conditionalWrites', 'partSize']);
const storageClasses = new Set(['STANDARD', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER_IR', 'REDUCED_REDUNDANCY', 'EXPRESS_ONEZONE']);
const archiveClasses = new Set(['GLACIER', 'DEEP_ARCHIVE']);

/** Settings read from the URL's query; a wrong one is a usage error (exit 2) before anything is touched. */
export interface S3Settings {
  endpoint?: string;
  region?: string;
  pathStyle: boolean;
  sse?: ServerSideEncryption;
  kmsKeyId?: string;
  storageClass?: StorageClass;
  /** false: the store lacks If-None-Match on PUT; conditional create is head-then-put (racy, see docs/storage.md). */
  conditionalWrites: boolean;
  partSize: number;
}

export function s3Settings(url: StorageUrl, env: NodeJS.ProcessEnv = process.env): S3Settings {
  const o = url.options;
  const where = `storage ${url.display}`;
  checkKnownOptions(url, knownOptions);
  const endpoint = endpointOption(url);
  const bool = (name: string, fallback: boolean): boolean => {
    const value = o[name];
    if (value === undefined) return fallback;
    if (optionOn(value)) return true;
    if (optionOff(value)) return false;
    throw usageError(`${where}: option ${name}: expected true or false, got '${value}'`);
  };
  let sse: ServerSideEncryption | undefined;
  if (o.sse !== undefined) {
    if (o.sse !== 'AES256' && o.sse !== 'aws:kms' && o.sse !== 'aws:kms:dsse') {
      throw usageError(`${where}: option sse: expected AES256, aws:kms or aws:kms:dsse, got '${o.sse}'`);
    }
    sse = o.sse;
  }
  if (o.kmsKeyId !== undefined) {
    if (!o.kmsKeyId) throw usageError(`${where}: option kmsKeyId is empty`);
    if (sse === undefined) sse = 'aws:kms';
    else if (sse === 'AES256') throw usageError(`${where}: option kmsKeyId needs sse=aws:kms, not AES256`);
  }
  let storageClass: StorageClass | undefined;
  if (o.storageClass !== undefined) {
    const value = o.storageClass.toUpperCase();
    if (archiveClasses.has(value)) {
      throw usageError(`${where}: option storageClass=${value}: objects in archive classes cannot be read without a restore request; use a lifecycle rule for old backups instead`);
    }
    if (!storageClasses.has(value)) throw usageError(`${where}: option storageClass: unknown class '${o.storageClass}' (one of ${[...storageClasses].join(', ')})`);
    storageClass = value as StorageClass;
  }
  let partSize = 8 * MiB;
  if (o.partSize !== undefined) {
    const mib = Number(o.partSize);
    if (!Number.isInteger(mib) || mib < 5 || mib > 512) throw usageError(`${where}: option partSize: expected MiB between 5 and 512, got '${o.partSize}'`);
    partSize = mib * MiB;
  }
  const region = o.region || env.AWS_REGION || env.AWS_DEFAULT_REGION || (endpoint ? 'us-east-1' : undefined);
  return {
    endpoint,
    region,
    pathStyle: bool('pathStyle', false),
    sse,
    kmsKeyId: o.kmsKeyId,
    storageClass,
    conditionalWrites: bool('conditionalWrites', true),
    partSize,
  };
}

/**
 * Amazon S3 and S3-compatible stores. Credentials come from the SDK's default chain (environment,
 * shared profile, web identity, container/instance role), never from the URL.
 */
export class S3Storage implements Storage {
  readonly location: string;
  readonly bucket: string;
  readonly prefix: string;
  readonly settings: S3Settings;
  readonly client: S3Client;
  readonly #policy: RetryPolicy;

  constructor(url: StorageUrl, policy: RetryPolicy, env: NodeJS.ProcessEnv = process.env) {
    this.location = url.display;
    this.bucket = url.bucket;
    this.prefix = url.prefix;
    this.settings = s3Settings(url, env);
    this.#policy = policy;
    const config: S3ClientConfig = {
      forcePathStyle: this.settings.pathStyle,
      // S3-compatible stores (MinIO, Ceph, R2, s3rver) reject or mishandle the newer default checksums.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // One retry policy for every backend: the SDK's retry loop asks ours what to retry and how long to wait.
      retryStrategy: policy.awsRetryStrategy() as unknown as S3ClientConfig['retryStrategy'],
      maxAttempts: policy.maxAttempts,
      requestHandler: {
        connectionTimeout: Math.min(10_000, policy.attemptTimeoutMs),
        // Idle timeout: a server that accepts and never answers (or stops mid-body) fails the attempt.
        socketTimeout: policy.attemptTimeoutMs,
        httpAgent: { keepAlive: true, maxSockets: 32 },
        httpsAgent: { keepAlive: true, maxSockets: 32 },
      },
    };
    if (this.settings.endpoint) config.endpoint = this.settings.endpoint;
    if (this.settings.region) config.region = this.settings.region;
    this.client = new S3Client(config);
    // Stores that predate the flexible checksums want Content-MD5 on DeleteObjects.
    this.client.middlewareStack.add(
      (next, context) => async (args) => {
        const request = args.request as { headers?: Record<string, string>; body?: unknown };
        if (context.commandName === 'DeleteObjectsCommand' && request.headers && typeof request.body === 'string') {
          request.headers['content-md5'] = createHash('md5').update(request.body).digest('base64');
        }
        return next(args);
      },
      { step: 'build', name: 'walshipContentMd5' },
    );
  }

  #name(key: string): string {
    return objectName(this.prefix, key);
  }

  async put(key: string, body: Readable | Buffer, options: PutOptions = {}): Promise<void> {
    const Key = this.#name(key);
    const conditional = Boolean(options.ifAbsent);
    if (conditional && !this.settings.conditionalWrites) {
      // Fallback for stores without If-None-Match on PUT: check, then write. Two writers racing
      // between the check and the write can both succeed (the later one wins); see docs/storage.md.
      if (await this.head(key)) throw new ObjectExistsError(key, this.location);
    }
    const params: PutObjectCommandInput = { Bucket: this.bucket, Key };
    if (this.settings.sse) params.ServerSideEncryption = this.settings.sse;
    if (this.settings.kmsKeyId) params.SSEKMSKeyId = this.settings.kmsKeyId;
    if (this.settings.storageClass) params.StorageClass = this.settings.storageClass;
    if (conditional && this.settings.conditionalWrites) params.IfNoneMatch = '*';
    const exists = (err: unknown) => {
      if (conditional && statusOf(err) === 412) return new ObjectExistsError(key, this.location);
      return err;
    };
    if (Buffer.isBuffer(body)) {
      await this.#policy.run(
        `put ${key}`,
        async (signal) => {
          try {
            await this.client.send(new PutObjectCommand({ ...params, Body: body, ContentLength: body.length }), { abortSignal: signal });
          } catch (err) {
            throw exists(err);
          }
        },
        { retry: false, attemptTimeoutMs: 0 },
      );
      return;
    }
    const partSize = Math.max(this.settings.partSize, Math.ceil((options.size ?? 0) / 9_000));
    await this.#policy.run(
      `put ${key}`,
      async (signal) => {
        // lib-storage buffers one part at a time per queue slot (bounded memory), sends a single PUT
        // when the stream fits in one part, else a multipart upload with IfNoneMatch on Complete.
        // Each part is a Buffer, so the SDK's retry loop (our policy) can resend it.
        const upload = new Upload({ client: this.client, params: { ...params, Body: body }, partSize, queueSize: 4, leavePartsOnError: false });
        const onAbort = () => void upload.abort().catch(() => {});
        signal.addEventListener('abort', onAbort, { once: true });
        try {
          await upload.done();
        } catch (err) {
          throw exists(err);
        } finally {
          signal.removeEventListener('abort', onAbort);
        }
      },
      // The body stream is consumed: a failed upload is not retried as a whole (its parts were).
      { replayable: false, attemptTimeoutMs: 0 },
    );
  }

  async get(key: string): Promise<Readable> {
    const Key = this.#name(key);
    const first = await this.#policy.run(
      `get ${key}`,
      async (signal) => {
        try {
          return await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }), { abortSignal: signal });
        } catch (err) {
          // A missing bucket is a storage error, never "not found" (that would end recovery early).
          if ((err as Error).name !== 'NoSuchBucket' && (statusOf(err) === 404 || (err as Error).name === 'NoSuchKey')) {
            throw new ObjectNotFoundError(key, this.location);
          }
          throw err;
        }
      },
      { retry: false },
    );
    const etag = first.ETag;
    return this.#policy.resumingRead(`get ${key}`, first.Body as Readable, first.ContentLength, async (offset, signal) => {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key, Range: `bytes=${offset}-`, ...(etag ? { IfMatch: etag } : {}) }),
        { abortSignal: signal },
      );
      return out.Body as Readable;
    });
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const Key = this.#name(key);
    return this.#policy.run(
      `head ${key}`,
      async (signal) => {
        try {
          const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }), { abortSignal: signal });
          return { key, size: out.ContentLength ?? 0, modified: out.LastModified ?? new Date(0) };
        } catch (err) {
          if (statusOf(err) === 404 || (err as Error).name === 'NotFound' || (err as Error).name === 'NoSuchKey') return undefined;
          throw err;
        }
      },
      { retry: false },
    );
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const Prefix = listPrefix(this.prefix, prefix);
    const strip = this.prefix ? this.prefix.length + 1 : 0;
    let token: string | undefined;
    do {
      const page = await this.#policy.run(
        `list ${prefix || '(all)'}`,
        (signal) =>
          this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix, ContinuationToken: token, MaxKeys: 1000 }), {
            abortSignal: signal,
          }),
        { retry: false },
      );
      for (const item of page.Contents ?? []) {
        if (!item.Key) continue;
        yield { key: item.Key.slice(strip), size: item.Size ?? 0, modified: item.LastModified ?? new Date(0) };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      const out = await this.#policy.run(
        `delete ${batch.length} object(s)`,
        (signal) =>
          this.client.send(
            new DeleteObjectsCommand({
              Bucket: this.bucket,
              Delete: { Objects: batch.map((key) => ({ Key: this.#name(key) })), Quiet: true },
            }),
            { abortSignal: signal },
          ),
        { retry: false },
      );
      const errors = (out.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (errors.length) {
        const first = errors[0]!;
        throw storageError(
          `storage ${this.location}: delete failed for ${errors.length} object(s), first ${first.Key ?? '?'}: ${first.Code ?? ''} ${first.Message ?? ''}`.trim(),
        );
      }
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
