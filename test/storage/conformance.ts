/**
 * One conformance suite for every Storage backend (DESIGN §3, §5). A backend's test file calls
 * `storageConformance(name, fixture)`; the fixture opens storages on fresh prefixes of one bucket.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Readable } from 'node:stream';
import { isExists, ObjectExistsError, ObjectNotFoundError, type Storage } from '../../src/storage/storage.ts';

export interface ConformanceFixture {
  /** A storage rooted at `prefix` (a fresh directory or key prefix); all share one bucket. */
  open(prefix: string): Promise<Storage>;
  teardown(): Promise<void>;
}

export interface ConformanceOptions {
  /** Size of the large streaming object; default 200 MiB. */
  largeBytes?: number;
  /** Allowed RSS growth during the large round trip; default 300 MiB. */
  rssGrowthLimit?: number;
  /** Size that forces a multipart/staged/resumable upload in the concurrent-create case; default 12 MiB. */
  multipartBytes?: number;
}

const MiB = 1024 * 1024;

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** `total` bytes of incompressible, deterministic-per-seed data, generated as it is read. */
export function generated(total: number, seed: Buffer = randomBytes(MiB)): { stream: Readable; digest: Promise<string> } {
  const hash = createHash('sha256');
  let resolveDigest!: (d: string) => void;
  const digest = new Promise<string>((r) => (resolveDigest = r));
  async function* chunks() {
    let sent = 0;
    let n = 0;
    while (sent < total) {
      const size = Math.min(seed.length, total - sent);
      const chunk = Buffer.allocUnsafe(size);
      seed.copy(chunk, 0, 0, size);
      if (size >= 8) chunk.writeBigUInt64BE(BigInt(n++), 0);
      hash.update(chunk);
      sent += size;
      yield chunk;
    }
    resolveDigest(hash.digest('hex'));
  }
  return { stream: Readable.from(chunks(), { objectMode: false }), digest };
}

export async function sha256Of(stream: Readable): Promise<{ digest: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { digest: hash.digest('hex'), bytes };
}

/** Highest RSS seen while `work` runs, sampled every 25 ms. */
export async function peakRss<T>(work: () => Promise<T>): Promise<{ result: T; baseline: number; peak: number }> {
  const baseline = process.memoryUsage.rss();
  let peak = baseline;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 25);
  try {
    const result = await work();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { result, baseline, peak };
  } finally {
    clearInterval(timer);
  }
}

/** Run `task` over items with `limit` in flight. */
async function pool<T>(items: T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await task(items[next++]!);
    }),
  );
}

async function collect(storage: Storage, prefix: string) {
  const out = [];
  for await (const info of storage.list(prefix)) out.push(info);
  return out;
}

/** The object names walship writes (DESIGN §3 repository layout). */
export const walshipKeys = [
  'walship.json',
  'wal/000000010000000000000001',
  'wal/00000002.history',
  'wal/000000010000000000000003.partial',
  'wal/00000001000000000000000A.00000028.backup',
  'backups/base_000000010000000000000002/parts/0001.tar',
  'backups/base_000000010000000000000002/manifest.json',
  'backups/base_000000010000000000000004_D_base_000000010000000000000002/manifest.json',
  'dumps/2026-11-27T14:05:00Z/db.dump',
];

export function storageConformance(name: string, fixture: () => Promise<ConformanceFixture>, options: ConformanceOptions = {}): void {
  const largeBytes = options.largeBytes ?? 200 * MiB;
  const rssLimit = options.rssGrowthLimit ?? 300 * MiB;
  const multipartBytes = options.multipartBytes ?? 12 * MiB;
  const run = randomBytes(3).toString('hex');
  let n = 0;

  describe(`storage conformance: ${name}`, () => {
    let fx: ConformanceFixture;
    const opened: Storage[] = [];
    const fresh = async (label: string): Promise<Storage> => {
      const storage = await fx.open(`conf-${run}-${n++}-${label}`);
      opened.push(storage);
      return storage;
    };

    before(async () => {
      fx = await fixture();
    });
    after(async () => {
      for (const storage of opened) await storage.close?.();
      await fx?.teardown();
    });

    it('put, get and head round-trip bytes and size', async () => {
      const s = await fresh('basic');
      const bytes = randomBytes(100_000);
      await s.put('wal/000000010000000000000001', bytes);
      assert.deepEqual(await readAll(await s.get('wal/000000010000000000000001')), bytes);
      const info = await s.head('wal/000000010000000000000001');
      assert.ok(info);
      assert.equal(info.key, 'wal/000000010000000000000001');
      assert.equal(info.size, bytes.length);
      assert.ok(info.modified instanceof Date && !Number.isNaN(info.modified.getTime()));
      assert.ok(Math.abs(info.modified.getTime() - Date.now()) < 10 * 60_000, 'modified is about now');
      // A stream body of a known small size goes the same way.
      const streamed = randomBytes(70_000);
      await s.put('wal/000000010000000000000002', Readable.from([streamed.subarray(0, 1000), streamed.subarray(1000)]), { size: streamed.length });
      assert.deepEqual(await readAll(await s.get('wal/000000010000000000000002')), streamed);
    });

    it('get of a missing key rejects with ObjectNotFoundError; head gives undefined', async () => {
      const s = await fresh('missing');
      await assert.rejects(s.get('wal/00000001000000000000FFFF'), (err: unknown) => {
        assert.ok(err instanceof ObjectNotFoundError, `expected ObjectNotFoundError, got ${String(err)}`);
        assert.equal(err.key, 'wal/00000001000000000000FFFF');
        return true;
      });
      assert.equal(await s.head('wal/00000001000000000000FFFF'), undefined);
      assert.equal(await s.head('nothing/here/at/all'), undefined);
    });

    it('zero-byte objects, from a Buffer and from an empty stream', async () => {
      const s = await fresh('empty');
      await s.put('empty-buffer', Buffer.alloc(0));
      await s.put('empty-stream', Readable.from([]));
      for (const key of ['empty-buffer', 'empty-stream']) {
        assert.equal((await readAll(await s.get(key))).length, 0);
        assert.equal((await s.head(key))?.size, 0);
      }
      await s.put('empty-conditional', Buffer.alloc(0), { ifAbsent: true });
      await assert.rejects(s.put('empty-conditional', Buffer.alloc(0), { ifAbsent: true }), ObjectExistsError);
    });

    it('keys with the names walship uses', async () => {
      const s = await fresh('names');
      for (const [i, key] of walshipKeys.entries()) await s.put(key, Buffer.from(`object ${i} ${key}`));
      for (const [i, key] of walshipKeys.entries()) {
        assert.equal((await readAll(await s.get(key))).toString(), `object ${i} ${key}`);
        assert.equal((await s.head(key))?.size, Buffer.byteLength(`object ${i} ${key}`));
      }
      const listed = (await collect(s, '')).map((o) => o.key).sort();
      assert.deepEqual(listed, [...walshipKeys].sort());
    });

    it('put without ifAbsent replaces the object', async () => {
      const s = await fresh('overwrite');
      await s.put('walship.json', Buffer.from('one'));
      await s.put('walship.json', Buffer.from('two, longer'));
      assert.equal((await readAll(await s.get('walship.json'))).toString(), 'two, longer');
    });

    it('ifAbsent refuses an existing key and leaves it untouched', async () => {
      const s = await fresh('ifabsent');
      const key = 'wal/000000010000000000000007';
      await s.put(key, Buffer.from('first'), { ifAbsent: true });
      await assert.rejects(s.put(key, Buffer.from('second'), { ifAbsent: true }), (err: unknown) => {
        assert.ok(isExists(err), `expected ObjectExistsError, got ${String(err)}`);
        assert.equal(err.key, key);
        return true;
      });
      await assert.rejects(s.put(key, Readable.from([Buffer.from('third')]), { ifAbsent: true }), ObjectExistsError);
      assert.equal((await readAll(await s.get(key))).toString(), 'first');
    });

    for (const [label, size, asStream] of [
      ['small buffers', 64 * 1024, false],
      ['multipart streams', multipartBytes, true],
    ] as const) {
      it(`ifAbsent: two concurrent pushers of one key (${label}): exactly one wins, whole`, async () => {
        const s = await fresh(`race-${asStream ? 'stream' : 'buffer'}`);
        for (let round = 0; round < (asStream ? 2 : 5); round++) {
          const key = `wal/0000000100000000000000${String(round).padStart(2, '0')}`;
          const bodies = [randomBytes(size), randomBytes(size)];
          const results = await Promise.allSettled(
            bodies.map((b) => s.put(key, asStream ? Readable.from([b.subarray(0, size >> 1), b.subarray(size >> 1)]) : b, { ifAbsent: true })),
          );
          const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
          const lost = results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
          assert.equal(won.length, 1, `exactly one winner, got ${won.length}: ${lost.map(String).join('; ')}`);
          assert.equal(lost.length, 1);
          assert.ok(isExists(lost[0]), `the loser gets ObjectExistsError, got ${String(lost[0])}`);
          const stored = await readAll(await s.get(key));
          assert.equal(stored.length, size);
          assert.ok(stored.equals(bodies[won[0]!]!), "the stored bytes are the winner's, whole");
        }
      });
    }

    it('list filters by prefix, reports sizes, and each page is in key order', async () => {
      const s = await fresh('list');
      const keys = ['wal/000000010000000000000001', 'wal/000000010000000000000002', 'wal/00000002.history', 'backups/base_1/manifest.json', 'walship.json'];
      for (const [i, key] of keys.entries()) await s.put(key, Buffer.alloc(i + 1, 7));
      const wal = await collect(s, 'wal/');
      assert.deepEqual(wal.map((o) => o.key), ['wal/000000010000000000000001', 'wal/000000010000000000000002', 'wal/00000002.history']);
      assert.deepEqual(wal.map((o) => o.size), [1, 2, 3]);
      assert.deepEqual((await collect(s, 'wal/00000002')).map((o) => o.key), ['wal/00000002.history']);
      // A prefix that ends mid-name matches names, not only directories.
      assert.deepEqual((await collect(s, 'wals')).map((o) => o.key), ['walship.json']);
      assert.deepEqual((await collect(s, 'nothing/')).length, 0);
      assert.equal((await collect(s, '')).length, keys.length);
    });

    it('list paginates past 1000 keys; delete removes more than 1000 keys', async () => {
      const s = await fresh('many');
      const keys = Array.from({ length: 1003 }, (_, i) => `wal/00000001000000000000${i.toString(16).toUpperCase().padStart(4, '0')}`);
      await pool(keys, 16, (key) => s.put(key, Buffer.from(key)));
      await s.put('other/x', Buffer.from('x'));
      const listed = await collect(s, 'wal/');
      assert.equal(listed.length, keys.length);
      assert.deepEqual(listed.map((o) => o.key).sort(), keys);
      await s.delete(keys);
      assert.equal((await collect(s, 'wal/')).length, 0);
      assert.deepEqual((await collect(s, '')).map((o) => o.key), ['other/x']);
    });

    it('delete removes objects; absent keys are not an error', async () => {
      const s = await fresh('delete');
      await s.put('backups/b/parts/0001.tar', Buffer.from('a'));
      await s.put('backups/b/manifest.json', Buffer.from('b'));
      await s.delete(['backups/b/parts/0001.tar', 'backups/b/never-existed']);
      assert.equal(await s.head('backups/b/parts/0001.tar'), undefined);
      assert.equal((await s.head('backups/b/manifest.json'))?.size, 1);
      await assert.rejects(s.get('backups/b/parts/0001.tar'), ObjectNotFoundError);
      await s.delete([]);
      await s.delete(['backups/b/manifest.json']);
      assert.equal((await collect(s, '')).length, 0);
    });

    it('prefix isolation: two repositories in one bucket do not see each other', async () => {
      const a = await fresh('iso');
      const b = await fx.open(`conf-${run}-${n - 1}-iso2`);
      opened.push(b);
      // A sibling whose name extends the other's prefix must not leak either.
      const c = await fx.open(`conf-${run}-${n - 1}-iso-x`);
      opened.push(c);
      await a.put('wal/000000010000000000000001', Buffer.from('a'));
      await b.put('wal/000000010000000000000001', Buffer.from('b'));
      await c.put('wal/000000010000000000000002', Buffer.from('c'));
      assert.equal((await readAll(await a.get('wal/000000010000000000000001'))).toString(), 'a');
      assert.equal((await readAll(await b.get('wal/000000010000000000000001'))).toString(), 'b');
      assert.deepEqual((await collect(a, '')).map((o) => o.key), ['wal/000000010000000000000001']);
      assert.deepEqual((await collect(b, 'wal/')).map((o) => o.key), ['wal/000000010000000000000001']);
      assert.equal(await a.head('wal/000000010000000000000002'), undefined);
      await b.delete(['wal/000000010000000000000001']);
      assert.equal((await a.head('wal/000000010000000000000001'))?.size, 1);
    });

    it(`large streaming object (${Math.round(largeBytes / MiB)} MiB): SHA-256 round trip, bounded memory`, async () => {
      const s = await fresh('large');
      const key = 'backups/base_000000010000000000000002/parts/0001.tar';
      const source = generated(largeBytes);
      const up = await peakRss(() => s.put(key, source.stream, { ifAbsent: true }));
      const expected = await source.digest;
      assert.equal((await s.head(key))?.size, largeBytes);
      const down = await peakRss(async () => sha256Of(await s.get(key)));
      assert.equal(down.result.bytes, largeBytes);
      assert.equal(down.result.digest, expected);
      const growth = Math.max(up.peak - up.baseline, down.peak - down.baseline);
      assert.ok(growth < rssLimit, `RSS grew by ${Math.round(growth / MiB)} MiB (limit ${Math.round(rssLimit / MiB)} MiB)`);
      await s.delete([key]);
    });
  });
}
