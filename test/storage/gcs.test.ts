import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Readable } from 'node:stream';
import { parseStorageUrl } from '../../src/config/storage-url.ts';
import { WalshipError } from '../../src/errors.ts';
import { gcsSettings } from '../../src/storage/gcs.ts';
import { openStorage } from '../../src/storage/open.ts';
import { ObjectExistsError } from '../../src/storage/storage.ts';
import { startGcsServer, type Emulator } from '../helpers/emulators.ts';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts';
import { readAll, storageConformance } from './conformance.ts';

storageConformance('gs:// (in-repo GCS JSON-API server, real @google-cloud/storage client)', async () => {
  const emulator = await startGcsServer();
  return {
    open: (prefix) => openStorage(parseStorageUrl(emulator.urlFor({ prefix })), { timeoutSeconds: 60, env: emulator.env }),
    teardown: () => emulator.stop(),
  };
});

describe('gs:// specifics', () => {
  let gcs: Emulator;
  let proxy: FaultProxy;
  before(async () => {
    gcs = await startGcsServer({ bucket: 'specifics' });
    proxy = await startFaultProxy(gcs.endpoint);
  });
  after(async () => {
    await proxy?.close();
    await gcs?.stop();
  });

  it('uses a simple upload with ifGenerationMatch=0 for small objects and a chunked resumable upload for large ones', async () => {
    const storage = await openStorage(parseStorageUrl(gcs.urlFor({ endpoint: proxy.endpoint, prefix: 'kinds', extra: { chunkSize: '1' } })), {
      timeoutSeconds: 30,
      env: gcs.env,
    });
    proxy.clear();
    await storage.put('small', Buffer.from('x'), { ifAbsent: true });
    const small = proxy.requests.find((r) => r.method === 'POST');
    assert.equal(small?.query.get('uploadType'), 'multipart');
    assert.equal(small?.query.get('ifGenerationMatch'), '0');
    proxy.clear();
    const big = Buffer.alloc(5 * 1024 * 1024 + 17, 3);
    await storage.put('big', Readable.from([big]), { ifAbsent: true });
    const start = proxy.requests.find((r) => r.method === 'POST');
    assert.equal(start?.query.get('uploadType'), 'resumable');
    assert.equal(start?.query.get('ifGenerationMatch'), '0');
    assert.ok(proxy.requests.filter((r) => r.method === 'PUT').length >= 5, 'one PUT per 1 MiB chunk');
    assert.deepEqual(await readAll(await storage.get('big')), big);
    await assert.rejects(storage.put('big', Readable.from([big]), { ifAbsent: true }), ObjectExistsError);
  });

  it('URL options and their errors', () => {
    assert.deepEqual(gcsSettings(parseStorageUrl('gs://b/p?endpoint=http://127.0.0.1:4443/&chunkSize=16')), {
      endpoint: 'http://127.0.0.1:4443',
      chunkSize: 16 * 1024 * 1024,
    });
    for (const url of ['gs://b?chunkSize=0', 'gs://b?endpoint=x', 'gs://b?region=x']) {
      assert.throws(() => gcsSettings(parseStorageUrl(url)), (err: unknown) => err instanceof WalshipError && err.exitCode === 2, url);
    }
  });
});
