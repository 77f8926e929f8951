/**
 * The file:// backend: objects appear whole or not at all, conditional creates are atomic,
 * temp files never outlive a put, listings follow key order.
 */
import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { ExitCode, WalshipError } from '../../src/errors.ts';
import { FileStorage, tempPrefix } from '../../src/storage/file.ts';
import { ObjectExistsError, ObjectNotFoundError, type Storage } from '../../src/storage/storage.ts';
import { postgresUser, runWalship } from '../helpers/cli.ts';
import { keystream, makeSegment, tempDir, writeWalFile } from '../helpers/wal-files.ts';

const scratch = tempDir('file-storage');
after(() => scratch.remove());
let repos = 0;
const newRepo = () => {
  const root = join(scratch.path, `repo-${++repos}`);
  mkdirSync(root);
  return { root, storage: new FileStorage(root) };
};

const bytesOf = async (storage: Storage, key: string) => buffer(await storage.get(key));
const keysOf = async (storage: Storage, prefix: string) => {
  const keys: string[] = [];
  for await (const info of storage.list(prefix)) keys.push(info.key);
  return keys;
};

/** Every file under `dir`, recursively, relative to it. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => !e.isDirectory())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}
const tempFilesUnder = (dir: string) => filesUnder(dir).filter((f) => f.split('/').pop()!.startsWith(tempPrefix));

/** A body that yields `chunks` chunks of 64 KiB (pausing between them), then fails. */
async function* failingBody(chunks: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < chunks; i++) {
    yield keystream(`chunk-${i}`, 65536);
    await sleep(1);
  }
  throw new Error('source failed midway');
}

describe('put, get, head, delete', () => {
  test('a buffer and a stream come back byte for byte; head reports the size', async () => {
    const { storage, root } = newRepo();
    const small = Buffer.from('00000002.history contents\n');
    const large = keystream('large', 3 * 1024 * 1024 + 11);
    await storage.put('wal/00000002.history', small);
    await storage.put('wal/000000010000000000000001', Readable.from([large.subarray(0, 100), large.subarray(100)]), { ifAbsent: true });
    assert.ok((await bytesOf(storage, 'wal/00000002.history')).equals(small));
    assert.ok((await bytesOf(storage, 'wal/000000010000000000000001')).equals(large));
    assert.ok(readFileSync(join(root, 'wal/000000010000000000000001')).equals(large));
    const info = await storage.head('wal/000000010000000000000001');
    assert.equal(info?.size, large.length);
    assert.equal(info?.key, 'wal/000000010000000000000001');
    assert.ok(info.modified instanceof Date);
    assert.deepEqual(tempFilesUnder(root), []);
  });

  test('an empty object', async () => {
    const { storage } = newRepo();
    await storage.put('empty', Buffer.alloc(0));
    assert.equal((await bytesOf(storage, 'empty')).length, 0);
    assert.equal((await storage.head('empty'))?.size, 0);
  });

  test('missing objects: get rejects with ObjectNotFoundError, head is undefined', async () => {
    const { storage } = newRepo();
    await assert.rejects(storage.get('wal/000000010000000000000009'), ObjectNotFoundError);
    assert.equal(await storage.head('wal/000000010000000000000009'), undefined);
    await storage.put('wal/x', Buffer.from('x'));
    // A key below an object (the "directory" is a file) is missing too, not an error.
    await assert.rejects(storage.get('wal/x/y'), ObjectNotFoundError);
    assert.equal(await storage.head('wal/x/y'), undefined);
    assert.equal(await storage.head('wal'), undefined); // a directory is not an object
  });

  test('a plain put replaces; an ifAbsent put over an existing key is refused and changes nothing', async () => {
    const { storage } = newRepo();
    await storage.put('k', Buffer.from('one'));
    await storage.put('k', Buffer.from('two'));
    assert.equal((await bytesOf(storage, 'k')).toString(), 'two');
    await assert.rejects(storage.put('k', Buffer.from('three'), { ifAbsent: true }), ObjectExistsError);
    assert.equal((await bytesOf(storage, 'k')).toString(), 'two');
  });

  test('keys that would leave the repository or are not canonical are refused', async () => {
    const { storage, root } = newRepo();
    for (const key of ['../escape', 'wal/../../escape', '/etc/passwd', 'a//b', 'a/./b', 'a/', '']) {
      await assert.rejects(storage.put(key, Buffer.from('x')), /invalid object key/, key);
      await assert.rejects(storage.get(key), /invalid object key/, key);
    }
    assert.ok(!existsSync(join(scratch.path, 'escape')));
    assert.deepEqual(filesUnder(root), []);
  });

  test('delete removes objects, ignores absent keys, and prunes emptied directories', async () => {
    const { storage, root } = newRepo();
    await storage.put('backups/base_1/parts/0000.tar', Buffer.from('a'));
    await storage.put('backups/base_1/manifest.json', Buffer.from('b'));
    await storage.put('backups/base_2/manifest.json', Buffer.from('c'));
    await storage.delete(['backups/base_1/parts/0000.tar', 'backups/base_1/manifest.json', 'backups/base_1/nothing']);
    assert.deepEqual(await keysOf(storage, ''), ['backups/base_2/manifest.json']);
    assert.ok(!existsSync(join(root, 'backups/base_1')));
    await storage.delete(['backups/base_2/manifest.json']);
    assert.deepEqual(await keysOf(storage, ''), []);
    assert.ok(existsSync(root), 'the repository root stays');
    await storage.delete([]);
  });
});

describe('conditional create under concurrency', () => {
  test('10 concurrent ifAbsent puts of one key: exactly one wins, the others get ObjectExistsError, the stored bytes are the winner’s', async () => {
    const { storage, root } = newRepo();
    const bodies = Array.from({ length: 10 }, (_, i) => keystream(`writer-${i}`, 512 * 1024));
    const results = await Promise.allSettled(
      bodies.map((body) => {
        // Streams in 16 KiB chunks so the writers interleave.
        const chunks = Array.from({ length: 32 }, (_, c) => body.subarray(c * 16384, (c + 1) * 16384));
        return storage.put('wal/000000010000000000000001', Readable.from(chunks), { ifAbsent: true });
      }),
    );
    const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    assert.equal(winners.length, 1, `winners: ${winners.join(', ')}`);
    for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof ObjectExistsError, String(r.reason));
    assert.ok((await bytesOf(storage, 'wal/000000010000000000000001')).equals(bodies[winners[0]!]!));
    assert.deepEqual(filesUnder(root), ['wal/000000010000000000000001']);
  });
});

describe('temp files', () => {
  test('none are left after a successful put', async () => {
    const { storage, root } = newRepo();
    for (let i = 0; i < 5; i++) await storage.put(`wal/00000001000000000000000${i}`, Buffer.from(`seg ${i}`), { ifAbsent: i % 2 === 0 });
    assert.deepEqual(tempFilesUnder(root), []);
    assert.equal(filesUnder(root).length, 5);
  });

  test('a body that fails midway leaves no object and no temp file', async () => {
    const { storage, root } = newRepo();
    for (const ifAbsent of [true, false]) {
      await assert.rejects(storage.put('wal/000000010000000000000002', Readable.from(failingBody(5)), { ifAbsent }), /source failed midway/);
      assert.equal(await storage.head('wal/000000010000000000000002'), undefined);
      assert.deepEqual(filesUnder(root), []);
    }
  });

  test('a failing body over an existing object leaves the object as it was', async () => {
    const { storage, root } = newRepo();
    await storage.put('k', Buffer.from('original'));
    await assert.rejects(storage.put('k', Readable.from(failingBody(3))), /source failed midway/);
    assert.equal((await bytesOf(storage, 'k')).toString(), 'original');
    assert.deepEqual(filesUnder(root), ['k']);
  });

  test('an integrity error from the body keeps its exit code', async () => {
    const { storage } = newRepo();
    async function* corrupt(): AsyncGenerator<Buffer> {
      yield Buffer.from('x');
      throw new WalshipError(ExitCode.integrity, 'corrupt object');
    }
    await assert.rejects(storage.put('k', Readable.from(corrupt())), (err: unknown) => err instanceof WalshipError && err.exitCode === ExitCode.integrity);
  });

  test('listings skip temp files', async () => {
    const { storage, root } = newRepo();
    await storage.put('wal/a', Buffer.from('a'));
    writeFileSync(join(root, 'wal', `${tempPrefix}b.123.abcd`), 'partial');
    assert.deepEqual(await keysOf(storage, 'wal/'), ['wal/a']);
  });
});

describe('list', () => {
  const keys = [
    'walship.json',
    'wal/000000010000000000000001',
    'wal/000000010000000000000002',
    'wal/000000010000000000000002.00000028.backup',
    'wal/00000002.history',
    'wal/000000020000000000000003.partial',
    'backups/base_1/manifest.json',
    'backups/base_1/parts/0000.tar',
    'backups/base_1/parts/0001.tar',
    'backups/base_10/manifest.json',
    'backups/base_1.old/manifest.json',
    'backups/base_1-x/manifest.json',
    'dumps/d1/dump.bin',
  ];
  const { storage } = newRepo();
  before(async () => {
    for (const key of keys) await storage.put(key, Buffer.from(key));
  });

  test('everything, in key order, with sizes', async () => {
    const infos = [];
    for await (const info of storage.list('')) infos.push(info);
    assert.deepEqual(
      infos.map((i) => i.key),
      [...keys].sort(),
    );
    for (const info of infos) assert.equal(info.size, Buffer.byteLength(info.key));
  });

  test('prefixes select by key, not by directory', async () => {
    const expect = async (prefix: string) => assert.deepEqual(await keysOf(storage, prefix), keys.filter((k) => k.startsWith(prefix)).sort(), prefix);
    for (const prefix of [
      'wal/',
      'wal',
      'wal/00000001',
      'wal/000000010000000000000002',
      'wal/00000002.',
      'backups/',
      'backups/base_1/',
      'backups/base_1',
      'backups/base_1/parts/',
      'backups/base_1/parts/0001',
      'backups/base_10/',
      'w',
      'd',
      'nothing/',
      'nothing',
      'walship.json',
      'walship.json/',
    ]) {
      await expect(prefix);
    }
  });
});

describe('a read-only repository (the CLI as the postgres OS user: root would bypass permissions)', () => {
  test('wal-push exits 5 with one line, nothing is written, and wal-fetch still works', async () => {
    const repo = join(scratch.path, 'readonly');
    const pgwal = join(scratch.path, 'readonly-pg_wal');
    mkdirSync(repo);
    mkdirSync(pgwal);
    const { uid, gid } = postgresUser();
    chownSync(repo, uid, gid);
    const env = { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_COMPRESSION: 'zstd' };
    const first = makeSegment({ segmentSize: 1024 * 1024, segNo: 1n });
    const second = makeSegment({ segmentSize: 1024 * 1024, segNo: 2n });
    const firstPath = writeWalFile(pgwal, first);
    const secondPath = writeWalFile(pgwal, second);

    const ok = await runWalship(['wal-push', firstPath], { env, asUser: 'postgres' });
    assert.equal(ok.code, 0, ok.stderr);
    const before = filesUnder(repo);
    for (const dir of [repo, join(repo, 'wal')]) chmodSync(dir, 0o555);
    try {
      const refused = await runWalship(['wal-push', secondPath], { env, asUser: 'postgres' });
      assert.equal(refused.code, ExitCode.storage, refused.stderr);
      assert.equal(refused.stderr.trim().split('\n').length, 1, refused.stderr);
      assert.match(refused.stderr, /permission denied/);
      assert.deepEqual(filesUnder(repo), before);

      const dest = join(scratch.path, 'readonly-restored');
      mkdirSync(dest);
      chmodSync(dest, 0o777);
      const fetched = await runWalship(['wal-fetch', first.name, join(dest, 'RECOVERYXLOG')], { env, asUser: 'postgres' });
      assert.equal(fetched.code, 0, fetched.stderr);
      assert.ok(readFileSync(join(dest, 'RECOVERYXLOG')).equals(first.bytes));
    } finally {
      chmodSync(join(repo, 'wal'), 0o755);
      chmodSync(repo, 0o755);
    }
  });

  test('a fresh repository directory the user cannot write: exit 5, nothing written', async () => {
    const repo = join(scratch.path, 'readonly-fresh');
    mkdirSync(repo, { mode: 0o555 });
    chmodSync(repo, 0o555);
    const seg = makeSegment({ segmentSize: 1024 * 1024, segNo: 3n });
    const path = writeWalFile(scratch.path, seg);
    const result = await runWalship(['wal-push', path], { env: { WALSHIP_STORAGE: `file://${repo}` }, asUser: 'postgres' });
    assert.equal(result.code, ExitCode.storage, result.stderr);
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    assert.match(result.stderr, new RegExp(`file://${repo}.*permission denied`));
    assert.deepEqual(filesUnder(repo), []);
  });
});

describe('a repository directory that does not exist', () => {
  test('is a storage error for every operation, never "not found" and never created', async () => {
    const root = join(scratch.path, 'not-mounted');
    const storage = new FileStorage(root);
    const attempts: [string, () => Promise<unknown>][] = [
      ['put', () => storage.put('wal/000000010000000000000001', Buffer.from('x'), { ifAbsent: true })],
      ['get', () => storage.get('wal/000000010000000000000001')],
      ['head', () => storage.head('wal/000000010000000000000001')],
      ['list', async () => {
        for await (const _ of storage.list('wal/')) void _;
      }],
      ['delete', () => storage.delete(['wal/000000010000000000000001'])],
    ];
    for (const [what, attempt] of attempts) {
      await assert.rejects(attempt, (err: unknown) => {
        assert.ok(err instanceof WalshipError, `${what}: ${String(err)}`);
        assert.equal(err.exitCode, ExitCode.storage);
        assert.match(err.message, /does not exist/);
        return true;
      });
    }
    assert.equal(existsSync(root), false);
  });
});
