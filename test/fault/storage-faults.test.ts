/**
 * Storage faults through a fault-injecting proxy in front of each emulator (DESIGN §5, issue 6):
 * throttling bursts, connection resets mid-upload, a server that never answers, truncated downloads.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Readable } from 'node:stream';
import { parseStorageUrl } from '../../src/config/storage-url.ts';
import { WalshipError } from '../../src/errors.ts';
import { openStorage, type StorageOptions } from '../../src/storage/open.ts';
import type { Storage } from '../../src/storage/storage.ts';
import { startAzurite, startGcsServer, startS3rver, type Emulator } from '../helpers/emulators.ts';
import { s3Error, startFaultProxy, type Fault, type FaultProxy, type ProxiedRequest } from '../helpers/fault-proxy.ts';

const MiB = 1024 * 1024;

interface Backend {
  name: string;
  start(): Promise<Emulator>;
  /** Any request that sends object bytes. */
  isWrite(r: ProxiedRequest): boolean;
  /** One part/block/chunk of a multi-request upload. */
  isPart(r: ProxiedRequest): boolean;
  /** A download of object bytes. */
  isGet(r: ProxiedRequest): boolean;
  /** What the service answers when it throttles. */
  throttle: Fault[];
}

const gcsError = (code: number, reason: string) => JSON.stringify({ error: { code, message: reason, errors: [{ reason, message: reason }] } });

const backends: Backend[] = [
  {
    name: 's3 (s3rver)',
    start: () => startS3rver(),
    isWrite: (r) => r.method === 'PUT' || (r.method === 'POST' && r.query.has('uploadId')),
    isPart: (r) => r.method === 'PUT' && r.query.has('partNumber'),
    isGet: (r) => r.method === 'GET' && !r.query.has('list-type') && r.path.split('/').length > 2,
    throttle: [
      { status: 503, body: s3Error('SlowDown', 'Please reduce your request rate.') },
      { status: 503, body: s3Error('ServiceUnavailable', 'Service is unable to handle request.') },
      { status: 500, body: s3Error('InternalError', 'We encountered an internal error. Please try again.') },
    ],
  },
  {
    name: 'azure (azurite)',
    start: () => startAzurite(),
    isWrite: (r) => r.method === 'PUT',
    isPart: (r) => r.method === 'PUT' && r.query.get('comp') === 'block',
    isGet: (r) => r.method === 'GET' && !r.query.has('comp') && !r.query.has('restype'),
    throttle: [
      { status: 503, body: '<?xml version="1.0"?><Error><Code>ServerBusy</Code><Message>The server is busy.</Message></Error>', headers: { 'x-ms-error-code': 'ServerBusy' } },
      { status: 500, body: '<?xml version="1.0"?><Error><Code>InternalError</Code><Message>Server encountered an internal error.</Message></Error>', headers: { 'x-ms-error-code': 'InternalError' } },
      { status: 503, body: '<?xml version="1.0"?><Error><Code>ServerBusy</Code><Message>Ingress is over the account limit.</Message></Error>', headers: { 'x-ms-error-code': 'ServerBusy' } },
    ],
  },
  {
    name: 'gcs (gcs-server)',
    start: () => startGcsServer(),
    isWrite: (r) => r.path.startsWith('/upload/') && (r.method === 'POST' || r.method === 'PUT'),
    isPart: (r) => r.method === 'PUT' && r.query.has('upload_id'),
    isGet: (r) => r.method === 'GET' && r.query.get('alt') === 'media',
    throttle: [
      { status: 429, body: gcsError(429, 'rateLimitExceeded'), headers: { 'content-type': 'application/json' } },
      { status: 503, body: gcsError(503, 'backendError'), headers: { 'content-type': 'application/json' } },
      { status: 503, body: gcsError(503, 'backendError'), headers: { 'content-type': 'application/json' } },
    ],
  },
];

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const isStorageError = (err: unknown) => err instanceof WalshipError && err.exitCode === 5;

for (const backend of backends) {
  describe(`storage faults: ${backend.name}`, () => {
    let emulator: Emulator;
    let proxy: FaultProxy;
    const opened: Storage[] = [];
    const retryLines: string[] = [];
    let n = 0;
    const open = async (options: Partial<StorageOptions> = {}) => {
      const storage = await openStorage(parseStorageUrl(emulator.urlFor({ endpoint: proxy.endpoint, prefix: `faults-${n++}` })), {
        timeoutSeconds: 30,
        env: emulator.env,
        log: (line) => retryLines.push(line),
        retry: { baseDelayMs: 20, maxDelayMs: 200 },
        ...options,
      });
      opened.push(storage);
      return storage;
    };

    before(async () => {
      emulator = await backend.start();
      Object.assign(process.env, emulator.env);
      proxy = await startFaultProxy(emulator.endpoint, { s3Conditional: backend.name.startsWith('s3') });
    });
    after(async () => {
      for (const storage of opened) await storage.close?.();
      await proxy?.close();
      await emulator?.stop();
    });

    it('a burst of throttling/5xx answers: the push still succeeds, each retry is logged', async () => {
      const storage = await open();
      proxy.clear();
      retryLines.length = 0;
      const burst = [...backend.throttle];
      const rule = proxy.inject(backend.isWrite, () => burst.shift() ?? backend.throttle[0]!, backend.throttle.length);
      const bytes = randomBytes(200_000);
      await storage.put('wal/000000010000000000000001', bytes, { ifAbsent: true });
      assert.equal(rule.hits, backend.throttle.length);
      assert.ok(retryLines.length >= backend.throttle.length, retryLines.join('\n'));
      assert.match(retryLines[0]!, /retrying in \d+ ms/);
      assert.deepEqual(await readAll(await storage.get('wal/000000010000000000000001')), bytes);

      // The same inside a multi-request upload: the failed part is resent on its own.
      const big = randomBytes(12 * MiB);
      const partRule = proxy.inject(backend.isPart, backend.throttle[0]!, 2);
      await storage.put('backups/b/parts/0001.tar', Readable.from([big]), { ifAbsent: true });
      assert.equal(partRule.hits, 2);
      assert.deepEqual(await readAll(await storage.get('backups/b/parts/0001.tar')), big);
    });

    it('connection reset mid-upload: retried, the object is complete', async () => {
      const storage = await open();
      proxy.clear();
      const small = randomBytes(300_000);
      const rule = proxy.inject(backend.isWrite, { reset: true, afterBytes: 64 * 1024 }, 1);
      await storage.put('wal/000000010000000000000002', small);
      assert.equal(rule.hits, 1);
      assert.deepEqual(await readAll(await storage.get('wal/000000010000000000000002')), small);

      const big = randomBytes(12 * MiB);
      const partRule = proxy.inject(backend.isPart, { reset: true, afterBytes: 1 * MiB }, 1);
      await storage.put('backups/b/parts/0002.tar', Readable.from([big.subarray(0, 5 * MiB), big.subarray(5 * MiB)]), { ifAbsent: true });
      assert.equal(partRule.hits, 1);
      const stored = await readAll(await storage.get('backups/b/parts/0002.tar'));
      assert.equal(stored.length, big.length);
      assert.ok(stored.equals(big));
    });

    it('resets on every part: the push fails with exit 5 and nothing partial is visible', async () => {
      // GCS resumable chunks are resent by the client itself, with a 1 s minimum backoff, until the deadline.
      const storage = await open({ timeoutSeconds: 6, retry: { baseDelayMs: 10, maxDelayMs: 50, maxAttempts: 3 } });
      proxy.clear();
      const rule = proxy.inject(backend.isPart, { reset: true, afterBytes: 256 * 1024 }, Infinity);
      const big = randomBytes(12 * MiB);
      await assert.rejects(storage.put('backups/b/parts/0003.tar', Readable.from([big]), { ifAbsent: true }), (err: unknown) => {
        assert.ok(isStorageError(err), String(err));
        assert.match((err as Error).message, /backups\/b\/parts\/0003\.tar/);
        return true;
      });
      assert.ok(rule.hits >= 2, `the part was retried (${rule.hits} attempts)`);
      proxy.clear();
      assert.equal(await storage.head('backups/b/parts/0003.tar'), undefined);
      const listed = [];
      for await (const o of storage.list('backups/')) listed.push(o.key);
      assert.deepEqual(listed, []);
    });

    it('a server that accepts and never answers: exit 5 within the deadline', async () => {
      const storage = await open({ timeoutSeconds: 2 });
      await storage.put('wal/000000010000000000000003', Buffer.from('before the stall'));
      proxy.clear();
      proxy.inject(() => true, { stall: true }, Infinity);
      const calls = [
        ['put', () => storage.put('wal/000000010000000000000004', Buffer.from('x'), { ifAbsent: true })],
        ['get', () => storage.get('wal/000000010000000000000003').then(readAll)],
        ['head', () => storage.head('wal/000000010000000000000003')],
        ['list', async () => {
          for await (const _ of storage.list('wal/')) void _;
        }],
        ['delete', () => storage.delete(['wal/000000010000000000000003'])],
      ] as const;
      // All at once: each must give up on its own within the deadline (plus scheduling slack).
      await Promise.all(
        calls.map(async ([what, call]) => {
          const started = Date.now();
          await assert.rejects((call as () => Promise<unknown>)(), (err: unknown) => {
            assert.ok(isStorageError(err), `${what}: ${String(err)}`);
            assert.match((err as Error).message, /within 2 s|timed out|no answer/, what);
            return true;
          });
          const elapsed = Date.now() - started;
          assert.ok(elapsed < 3500, `${what} gave up after ${elapsed} ms (deadline 2 s)`);
        }),
      );
      proxy.clear();
    });

    it('a download cut short is detected and resumed from the last byte', async () => {
      // The GCS client's stream does not report a cut connection; the idle timeout notices it.
      const storage = await open({ attemptTimeoutSeconds: 1 });
      const bytes = randomBytes(3 * MiB);
      await storage.put('backups/b/parts/0004.tar', bytes);
      proxy.clear();
      retryLines.length = 0;
      const rule = proxy.inject(backend.isGet, { truncate: 1 * MiB + 123 }, 2);
      const got = await readAll(await storage.get('backups/b/parts/0004.tar'));
      assert.equal(rule.hits, 2);
      assert.equal(got.length, bytes.length);
      assert.ok(got.equals(bytes), 'resumed bytes match');
      const ranged = proxy.requests.filter((r) => backend.isGet(r) && (r.headers.range || r.headers['x-ms-range']));
      assert.ok(ranged.length >= 2, 'resumed with ranged GETs');
      assert.ok(retryLines.some((l) => /interrupted at byte/.test(l)), retryLines.join('\n'));
    });

    it('a download that keeps getting cut fails loudly (exit 5), never silently short', async () => {
      const storage = await open({ attemptTimeoutSeconds: 1, retry: { baseDelayMs: 10, maxDelayMs: 20, maxAttempts: 3 } });
      const bytes = randomBytes(2 * MiB);
      await storage.put('backups/b/parts/0005.tar', bytes);
      proxy.clear();
      proxy.inject(backend.isGet, { truncate: 0 }, Infinity);
      let received = 0;
      await assert.rejects(
        (async () => {
          for await (const chunk of await storage.get('backups/b/parts/0005.tar')) received += (chunk as Buffer).length;
        })(),
        (err: unknown) => {
          assert.ok(isStorageError(err), String(err));
          return true;
        },
      );
      assert.ok(received < bytes.length);
      proxy.clear();
    });
  });
}
