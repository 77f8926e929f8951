import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  AnonymousCredential,
  BlobServiceClient,
  newPipeline,
  StorageSharedKeyCredential,
  type BlockBlobClient,
  type ContainerClient,
} from '@azure/storage-blob';
import type { StorageUrl } from '../config/storage-url.ts';
import { usageError } from '../errors.ts';
import { checkKnownOptions, endpointOption } from './url-options.ts';
import { blocks, eachLimited, listPrefix, objectName, readHead, statusOf, type RetryPolicy } from './retry.ts';
import { ObjectExistsError, ObjectNotFoundError, type ObjectInfo, type PutOptions, type Storage } from './storage.ts';

const MiB = 1024 * 1024;
const knownOptions = new Set(['endpoint', 'account', 'blockSize']);

export interface AzureSettings {
  /** Blob service endpoint, e.g. https://ACCOUNT.blob.core.windows.net or http://127.0.0.1:10000/devstoreaccount1. */
  endpoint: string;
  account: string;
  /** How the client authenticates (never the secret itself). */
  auth: 'connection-string' | 'shared-key' | 'sas';
  blockSize: number;
}

interface Credentials {
  settings: AzureSettings;
  credential: StorageSharedKeyCredential | AnonymousCredential;
  sas?: string;
}

function parseConnectionString(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return out;
}

/**
 * Read the account, endpoint and credentials: AZURE_STORAGE_CONNECTION_STRING, or an account name
 * (URL option `account` or AZURE_STORAGE_ACCOUNT) with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN.
 * The URL option `endpoint` overrides the endpoint (Azurite, sovereign clouds, private endpoints).
 */
function credentials(url: StorageUrl, env: NodeJS.ProcessEnv): Credentials {
  const o = url.options;
  const where = `storage ${url.display}`;
  checkKnownOptions(url, knownOptions);
  let blockSize = 8 * MiB;
  if (o.blockSize !== undefined) {
    const mib = Number(o.blockSize);
    if (!Number.isInteger(mib) || mib < 1 || mib > 4000) throw usageError(`${where}: option blockSize: expected MiB between 1 and 4000, got '${o.blockSize}'`);
    blockSize = mib * MiB;
  }
  const endpointOverride = endpointOption(url);
  const endpointFor = (account: string, suffix = 'core.windows.net', protocol = 'https') =>
    endpointOverride ?? `${protocol}://${account}.blob.${suffix}`;
  const cs = env.AZURE_STORAGE_CONNECTION_STRING;
  if (cs) {
    const fields = parseConnectionString(cs);
    const account = fields.AccountName ?? o.account ?? env.AZURE_STORAGE_ACCOUNT ?? '';
    let endpoint = endpointOverride ?? fields.BlobEndpoint?.replace(/\/+$/, '');
    if (!endpoint && account) endpoint = endpointFor(account, fields.EndpointSuffix, fields.DefaultEndpointsProtocol);
    if (!endpoint) throw usageError(`${where}: AZURE_STORAGE_CONNECTION_STRING has neither AccountName nor BlobEndpoint`);
    const settings: AzureSettings = { endpoint, account, auth: 'connection-string', blockSize };
    if (fields.AccountKey && account) return { settings, credential: new StorageSharedKeyCredential(account, fields.AccountKey) };
    if (fields.SharedAccessSignature) return { settings, credential: new AnonymousCredential(), sas: fields.SharedAccessSignature.replace(/^\?/, '') };
    throw usageError(`${where}: AZURE_STORAGE_CONNECTION_STRING has neither AccountName+AccountKey nor SharedAccessSignature`);
  }
  const account = o.account ?? env.AZURE_STORAGE_ACCOUNT;
  if (!account && !endpointOverride) {
    throw usageError(`${where}: no Azure account: set the URL option account=NAME or AZURE_STORAGE_ACCOUNT, or AZURE_STORAGE_CONNECTION_STRING`);
  }
  const endpoint = endpointFor(account ?? '');
  if (env.AZURE_STORAGE_KEY) {
    if (!account) throw usageError(`${where}: AZURE_STORAGE_KEY needs an account name (URL option account or AZURE_STORAGE_ACCOUNT)`);
    return { settings: { endpoint, account, auth: 'shared-key', blockSize }, credential: new StorageSharedKeyCredential(account, env.AZURE_STORAGE_KEY) };
  }
  if (env.AZURE_STORAGE_SAS_TOKEN) {
    return {
      settings: { endpoint, account: account ?? '', auth: 'sas', blockSize },
      credential: new AnonymousCredential(),
      sas: env.AZURE_STORAGE_SAS_TOKEN.replace(/^\?/, ''),
    };
  }
  throw usageError(
    `${where}: no Azure credentials: set AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY (with an account) or AZURE_STORAGE_SAS_TOKEN`,
  );
}

/** Azure Blob Storage (block blobs). */
export class AzureStorage implements Storage {
  readonly location: string;
  readonly prefix: string;
  readonly settings: AzureSettings;
  readonly container: ContainerClient;
  readonly #policy: RetryPolicy;

  constructor(url: StorageUrl, policy: RetryPolicy, env: NodeJS.ProcessEnv = process.env) {
    this.location = url.display;
    this.prefix = url.prefix;
    this.#policy = policy;
    const { settings, credential, sas } = credentials(url, env);
    this.settings = settings;
    // The SDK's own retries are off: every request runs under our RetryPolicy with an abort signal.
    const pipeline = newPipeline(credential, { retryOptions: { maxTries: 1 }, keepAliveOptions: { enable: true } });
    const service = new BlobServiceClient(sas ? `${settings.endpoint}?${sas}` : settings.endpoint, pipeline);
    this.container = service.getContainerClient(url.bucket);
  }

  #blob(key: string): BlockBlobClient {
    return this.container.getBlockBlobClient(objectName(this.prefix, key));
  }

  async put(key: string, body: Readable | Buffer, options: PutOptions = {}): Promise<void> {
    const blob = this.#blob(key);
    const conditions = options.ifAbsent ? { ifNoneMatch: '*' } : undefined;
    const exists = (err: unknown) => {
      const status = statusOf(err);
      if (options.ifAbsent && (status === 409 || status === 412)) return new ObjectExistsError(key, this.location);
      return err;
    };
    const single = (bytes: Buffer) =>
      this.#policy.run(`put ${key}`, async (signal) => {
        try {
          await blob.upload(bytes, bytes.length, { conditions, abortSignal: signal });
        } catch (err) {
          throw exists(err);
        }
      });
    const blockSize = Math.max(this.settings.blockSize, Math.ceil((options.size ?? 0) / 45_000));
    if (Buffer.isBuffer(body)) {
      if (body.length <= blockSize) return single(body);
      body = Readable.from([body]);
    }
    // A stream that fits in one block is sent (and can be retried) as one request.
    const { head, done, rest } = await readHead(body, blockSize);
    if (done) return single(head);
    // Larger: stage blocks (each a Buffer, retried on its own), then commit the list conditionally.
    // Block ids are unique to this upload, so concurrent uploaders of one name do not mix blocks;
    // uncommitted blocks are never visible and Azure discards them after a week.
    const upload = randomBytes(6).toString('hex');
    const ids: string[] = [];
    await eachLimited(blocks(head, rest, blockSize), 4, async (bytes, index) => {
      const id = Buffer.from(`${upload}-${String(index).padStart(6, '0')}`).toString('base64');
      ids[index] = id;
      await this.#policy.run(`put ${key} (block ${index + 1})`, (signal) => blob.stageBlock(id, bytes, bytes.length, { abortSignal: signal }));
    });
    await this.#policy.run(`put ${key} (commit ${ids.length} blocks)`, async (signal) => {
      try {
        await blob.commitBlockList(ids, { conditions, abortSignal: signal });
      } catch (err) {
        throw exists(err);
      }
    });
  }

  async get(key: string): Promise<Readable> {
    const blob = this.#blob(key);
    const first = await this.#policy.run(`get ${key}`, async (signal) => {
      try {
        return await blob.download(0, undefined, { abortSignal: signal, maxRetryRequests: 0 });
      } catch (err) {
        // A missing container is a storage error, never "not found" (that would end recovery early).
        if (statusOf(err) === 404 && (err as { code?: string }).code !== 'ContainerNotFound') throw new ObjectNotFoundError(key, this.location);
        throw err;
      }
    });
    const etag = first.etag;
    return this.#policy.resumingRead(`get ${key}`, first.readableStreamBody as Readable, first.contentLength, async (offset, signal) => {
      const out = await blob.download(offset, undefined, { abortSignal: signal, maxRetryRequests: 0, conditions: etag ? { ifMatch: etag } : undefined });
      return out.readableStreamBody as Readable;
    });
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const blob = this.#blob(key);
    return this.#policy.run(`head ${key}`, async (signal) => {
      try {
        const p = await blob.getProperties({ abortSignal: signal });
        return { key, size: p.contentLength ?? 0, modified: p.lastModified ?? new Date(0) };
      } catch (err) {
        if (statusOf(err) === 404) return undefined;
        throw err;
      }
    });
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const full = listPrefix(this.prefix, prefix);
    const strip = this.prefix ? this.prefix.length + 1 : 0;
    let token: string | undefined;
    do {
      const page = await this.#policy.run(`list ${prefix || '(all)'}`, async (signal) => {
        const step = await this.container
          .listBlobsFlat({ prefix: full, abortSignal: signal })
          .byPage({ maxPageSize: 1000, ...(token ? { continuationToken: token } : {}) })
          .next();
        return step.done ? undefined : step.value;
      });
      for (const item of page?.segment.blobItems ?? []) {
        yield { key: item.name.slice(strip), size: item.properties.contentLength ?? 0, modified: item.properties.lastModified };
      }
      token = page?.continuationToken || undefined;
    } while (token);
  }

  async delete(keys: readonly string[]): Promise<void> {
    await eachLimited(keys, 8, async (key) => {
      const blob = this.#blob(key);
      await this.#policy.run(`delete ${key}`, (signal) => blob.deleteIfExists({ abortSignal: signal, deleteSnapshots: 'include' }));
    });
  }
}
