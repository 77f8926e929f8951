import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseStorageUrl } from '../../src/config/storage-url.ts';
import { WalshipError } from '../../src/errors.ts';
import { openStorage } from '../../src/storage/open.ts';
import { ObjectExistsError } from '../../src/storage/storage.ts';
import { azuriteAccount, azuriteKey, startAzurite, type Emulator } from '../helpers/emulators.ts';
import { readAll, storageConformance } from './conformance.ts';

storageConformance('azure:// (azurite)', async () => {
  const emulator = await startAzurite();
  return {
    open: (prefix) => openStorage(parseStorageUrl(emulator.urlFor({ prefix })), { timeoutSeconds: 60, env: emulator.env }),
    teardown: () => emulator.stop(),
  };
});

describe('azure:// specifics', () => {
  let az: Emulator;
  before(async () => {
    az = await startAzurite({ container: 'specifics' });
  });
  after(async () => {
    await az?.stop();
  });

  it('authenticates with AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY and an endpoint option', async () => {
    const env = { AZURE_STORAGE_ACCOUNT: azuriteAccount, AZURE_STORAGE_KEY: azuriteKey };
    const storage = await openStorage(parseStorageUrl(`azure://specifics/key?endpoint=${encodeURIComponent(az.endpoint)}`), { timeoutSeconds: 30, env });
    await storage.put('wal/000000010000000000000001', Buffer.from('k'), { ifAbsent: true });
    await assert.rejects(storage.put('wal/000000010000000000000001', Buffer.from('x'), { ifAbsent: true }), ObjectExistsError);
    assert.equal((await readAll(await storage.get('wal/000000010000000000000001'))).toString(), 'k');
  });

  it('authenticates with AZURE_STORAGE_SAS_TOKEN', async () => {
    const { ContainerSASPermissions, generateBlobSASQueryParameters, StorageSharedKeyCredential } = await import('@azure/storage-blob');
    const sas = generateBlobSASQueryParameters(
      { containerName: 'specifics', permissions: ContainerSASPermissions.parse('racwdl'), expiresOn: new Date(Date.now() + 3600_000) },
      new StorageSharedKeyCredential(azuriteAccount, azuriteKey),
    ).toString();
    const env = { AZURE_STORAGE_SAS_TOKEN: sas };
    const storage = await openStorage(parseStorageUrl(`azure://specifics/sas?endpoint=${encodeURIComponent(az.endpoint)}`), { timeoutSeconds: 30, env });
    await storage.put('a', Buffer.from('sas'));
    assert.equal((await readAll(await storage.get('a'))).toString(), 'sas');
    const keys = [];
    for await (const o of storage.list('')) keys.push(o.key);
    assert.deepEqual(keys, ['a']);
  });

  it('a wrong key is a storage error (exit 5) that does not print the key', async () => {
    const env = { AZURE_STORAGE_ACCOUNT: azuriteAccount, AZURE_STORAGE_KEY: Buffer.alloc(64, 7).toString('base64') };
    const storage = await openStorage(parseStorageUrl(`azure://specifics/bad?endpoint=${encodeURIComponent(az.endpoint)}`), { timeoutSeconds: 10, env });
    await assert.rejects(storage.put('a', Buffer.from('x')), (err: unknown) => {
      assert.ok(err instanceof WalshipError && err.exitCode === 5, String(err));
      assert.match(err.message, /azure:\/\/specifics\/bad/);
      assert.doesNotMatch(err.message, new RegExp(env.AZURE_STORAGE_KEY.slice(0, 20).replace(/[+/]/g, '.')));
      return true;
    });
  });

  it('missing credentials and bad options are usage errors (exit 2)', async () => {
    for (const [url, env, words] of [
      ['azure://c/p', {}, /no Azure account/],
      ['azure://c/p?account=a', {}, /no Azure credentials/],
      ['azure://c/p?acount=a', {}, /unknown option 'acount'/],
      ['azure://c/p?account=a&blockSize=0', { AZURE_STORAGE_KEY: 'eA==' }, /option blockSize/],
      ['azure://c/p?endpoint=nope', { AZURE_STORAGE_KEY: 'eA==' }, /option endpoint/],
    ] as const) {
      await assert.rejects(
        openStorage(parseStorageUrl(url), { timeoutSeconds: 5, env }),
        (err: unknown) => err instanceof WalshipError && err.exitCode === 2 && words.test(err.message),
        url,
      );
    }
  });
});
