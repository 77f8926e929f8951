import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseStorageUrl } from '../../src/config/storage-url.ts';
import { WalshipError } from '../../src/errors.ts';
import { openStorage } from '../../src/storage/open.ts';
import { s3Settings } from '../../src/storage/s3.ts';
import { ObjectExistsError } from '../../src/storage/storage.ts';
import { startS3rver, type Emulator } from '../helpers/emulators.ts';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts';
import { readAll, storageConformance } from './conformance.ts';

// s3rver does not enforce If-None-Match; the suite runs through the fault proxy, which adds S3's
// conditional-create semantics (412 for an existing key, serialized per key). See docs/storage.md.
let emulator: Emulator;
let proxy: FaultProxy;

storageConformance('s3:// (s3rver behind the conditional-write proxy)', async () => {
  emulator = await startS3rver();
  Object.assign(process.env, emulator.env);
  proxy = await startFaultProxy(emulator.endpoint, { s3Conditional: true });
  return {
    open: (prefix) => openStorage(parseStorageUrl(emulator.urlFor({ endpoint: proxy.endpoint, prefix })), { timeoutSeconds: 60 }),
    teardown: async () => {
      await proxy.close();
      await emulator.stop();
    },
  };
});

describe('s3:// specifics', () => {
  let s3: Emulator;
  let conditional: FaultProxy;
  before(async () => {
    s3 = await startS3rver();
    Object.assign(process.env, s3.env);
    conditional = await startFaultProxy(s3.endpoint, { s3Conditional: true });
  });
  after(async () => {
    await conditional?.close();
    await s3?.stop();
  });

  it('sends If-None-Match: * on a conditional PutObject and on CompleteMultipartUpload, not on parts', async () => {
    const storage = await openStorage(parseStorageUrl(s3.urlFor({ endpoint: conditional.endpoint, prefix: 'headers' })), { timeoutSeconds: 30 });
    conditional.clear();
    await storage.put('small', Buffer.from('x'), { ifAbsent: true });
    const { Readable } = await import('node:stream');
    await storage.put('big', Readable.from([Buffer.alloc(9 * 1024 * 1024, 1), Buffer.alloc(3 * 1024 * 1024, 2)]), { ifAbsent: true });
    const writes = conditional.requests.filter((r) => r.method === 'PUT' || r.method === 'POST');
    const put = writes.find((r) => r.path.endsWith('/headers/small'));
    assert.equal(put?.headers['if-none-match'], '*');
    const parts = writes.filter((r) => r.query.has('partNumber'));
    assert.ok(parts.length >= 2, 'a multipart upload');
    assert.ok(parts.every((r) => r.headers['if-none-match'] === undefined));
    const complete = writes.find((r) => r.method === 'POST' && r.query.has('uploadId'));
    assert.equal(complete?.headers['if-none-match'], '*');
    await storage.close?.();
  });

  it('conditionalWrites=false: head-then-put fallback refuses an existing key', async () => {
    // Straight to s3rver, no proxy: the fallback must not rely on the store's If-None-Match.
    const storage = await openStorage(parseStorageUrl(s3.urlFor({ prefix: 'fallback', extra: { conditionalWrites: 'false' } })), { timeoutSeconds: 30 });
    await storage.put('wal/000000010000000000000001', Buffer.from('first'), { ifAbsent: true });
    await assert.rejects(storage.put('wal/000000010000000000000001', Buffer.from('second'), { ifAbsent: true }), ObjectExistsError);
    assert.equal((await readAll(await storage.get('wal/000000010000000000000001'))).toString(), 'first');
    await storage.close?.();
  });

  it('without the proxy, s3rver ignores If-None-Match (the emulator gap the proxy covers)', async () => {
    const storage = await openStorage(parseStorageUrl(s3.urlFor({ prefix: 'gap' })), { timeoutSeconds: 30 });
    await storage.put('k', Buffer.from('first'), { ifAbsent: true });
    await storage.put('k', Buffer.from('second'), { ifAbsent: true }); // would be 412 on S3
    assert.equal((await readAll(await storage.get('k'))).toString(), 'second');
    await storage.close?.();
  });

  it('URL options: sse, kmsKeyId, storageClass, pathStyle, endpoint, region', () => {
    const settings = s3Settings(
      parseStorageUrl('s3://b/p?endpoint=http://minio:9000/&pathStyle=true&region=eu-west-1&sse=aws:kms&kmsKeyId=alias/walship&storageClass=standard_ia&partSize=16'),
      {},
    );
    assert.equal(settings.endpoint, 'http://minio:9000');
    assert.equal(settings.pathStyle, true);
    assert.equal(settings.region, 'eu-west-1');
    assert.equal(settings.sse, 'aws:kms');
    assert.equal(settings.kmsKeyId, 'alias/walship');
    assert.equal(settings.storageClass, 'STANDARD_IA');
    assert.equal(settings.partSize, 16 * 1024 * 1024);
    assert.equal(settings.conditionalWrites, true);
    assert.equal(s3Settings(parseStorageUrl('s3://b?kmsKeyId=k'), {}).sse, 'aws:kms');
    assert.equal(s3Settings(parseStorageUrl('s3://b'), { AWS_REGION: 'ap-south-1' }).region, 'ap-south-1');
  });

  it('bad URL options are usage errors (exit 2) naming the option', () => {
    for (const [url, words] of [
      ['s3://b?sse=DES', /option sse/],
      ['s3://b?sse=AES256&kmsKeyId=k', /kmsKeyId needs sse=aws:kms/],
      ['s3://b?storageClass=GLACIER', /archive classes/],
      ['s3://b?storageClass=FAST', /unknown class/],
      ['s3://b?pathStyle=maybe', /option pathStyle/],
      ['s3://b?endpoint=ftp://x', /option endpoint/],
      ['s3://b?pathstyle=true', /unknown option 'pathstyle'/],
      ['s3://b?partSize=1', /option partSize/],
    ] as const) {
      assert.throws(
        () => s3Settings(parseStorageUrl(url), {}),
        (err: unknown) => err instanceof WalshipError && err.exitCode === 2 && words.test(err.message),
        url,
      );
    }
  });

  it('sends the server-side encryption and storage class headers', async () => {
    const storage = await openStorage(
      parseStorageUrl(s3.urlFor({ endpoint: conditional.endpoint, prefix: 'sse', extra: { sse: 'AES256', storageClass: 'STANDARD_IA' } })),
      { timeoutSeconds: 30 },
    );
    conditional.clear();
    await storage.put('x', Buffer.from('x'));
    const put = conditional.requests.find((r) => r.method === 'PUT');
    assert.equal(put?.headers['x-amz-server-side-encryption'], 'AES256');
    assert.equal(put?.headers['x-amz-storage-class'], 'STANDARD_IA');
    await storage.close?.();
  });
});
