/**
 * dump-push's streaming and clean-up without a server: a stand-in pg_dump (a shell script writing a
 * custom-format header and data) feeds pushDatabaseDump, over a file:// repository, possibly
 * wrapped to fail. The real pg_dump/PostgreSQL paths are in test/integration/dump-cli.test.ts.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { ExitCode, storageError, WalshipError } from '../../src/errors.ts';
import { listDumps, readManifest, scanDumps } from '../../src/dump/manifest.ts';
import { fetchToFile, selectFile } from '../../src/dump/fetch.ts';
import { pushDatabaseDump } from '../../src/dump/push.ts';
import { pgTools } from '../../src/dump/tools.ts';
import { FileStorage } from '../../src/storage/file.ts';
import type { Storage } from '../../src/storage/storage.ts';
import { int, str } from '../helpers/pg-dump-archive.ts';

const archiveHeader = Buffer.concat([
  Buffer.from('PGDMP'),
  Buffer.from([1, 14, 0, 4, 8, 1]),
  int(0),
  ...[0, 0, 3, 27, 10, 126, 0].map(int),
  str('app'),
  str('15.99 (test)'),
  str('15.99 (test)'),
]);

let dir = '';
let bin = '';

/** A pg_dump stand-in: the header, then `mib` MiB of data, then the given exit status and message. */
async function fakePgDump(mib: number, status = 0, message = ''): Promise<void> {
  await writeFile(join(dir, 'header.bin'), archiveHeader);
  await writeFile(
    join(bin, 'pg_dump'),
    `#!/bin/sh\ncat ${join(dir, 'header.bin')}\nhead -c ${mib * 1024 * 1024} /dev/zero | tr '\\0' 'x'\n${message ? `echo '${message}' >&2\n` : ''}exit ${status}\n`,
  );
  await chmod(join(bin, 'pg_dump'), 0o755);
}

/** A FileStorage whose put of a stream fails after `failAfter` bytes of the body. */
function failingStorage(inner: FileStorage, failAfter: number): Storage & { consumed: () => number } {
  let consumed = 0;
  return {
    location: inner.location,
    get: (key) => inner.get(key),
    head: (key) => inner.head(key),
    list: (prefix) => inner.list(prefix),
    delete: (keys) => inner.delete(keys),
    async put(key: string, body: Readable | Buffer, options) {
      if (Buffer.isBuffer(body)) return inner.put(key, body, options);
      for await (const chunk of body) {
        consumed += (chunk as Buffer).length;
        if (consumed > failAfter) {
          body.destroy();
          throw storageError(`storage test: simulated failure after ${consumed} bytes`);
        }
      }
      throw new Error('unreachable: the body should have been long enough');
    },
    consumed: () => consumed,
  };
}

const tools = () => pgTools({ pgBinDir: bin, pghost: undefined, pgport: undefined, pguser: undefined, pgdatabase: undefined, pgpassword: undefined });

describe('pushDatabaseDump (stand-in pg_dump)', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'walship-dump-unit-'));
    bin = join(dir, 'bin');
    await mkdir(bin);
    for (let i = 1; i <= 5; i++) await mkdir(join(dir, `repo${i}`));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('streams, names by the archive header, manifest last; a fetch verifies the checksum', async () => {
    await fakePgDump(8);
    const storage = new FileStorage(join(dir, 'repo1'));
    const m = await pushDatabaseDump({ storage, encode: { compression: 'zstd' }, tools: tools() }, undefined);
    assert.match(m.name, /^dump_\d{8}T\d{6}Z_app$/);
    assert.equal(m.database, 'app');
    assert.equal(m.serverVersion, '15.99 (test)');
    assert.equal(m.size, archiveHeader.length + 8 * 1024 * 1024);
    assert.ok(m.storedSize < 100_000, `zstd shrinks the x's: ${m.storedSize}`);
    assert.deepEqual(await listDumps(storage, undefined), [m]);

    // A second dump in the same second gets a suffix instead of colliding.
    const again = await pushDatabaseDump({ storage, encode: { compression: 'lz4' }, tools: tools() }, undefined);
    if (again.name.slice(0, 20) === m.name.slice(0, 20)) assert.equal(again.name, `${m.name}_1`);

    const out = join(dir, 'out.dump');
    await fetchToFile({ storage }, m, selectFile(m, {})!, out);
    // A manifest whose checksum does not match what is stored: exit 4, no file.
    const forged = { ...m, files: [{ ...m.files[0]!, sha256: '0'.repeat(64) }] };
    await assert.rejects(fetchToFile({ storage }, forged, forged.files[0]!, join(dir, 'forged.dump')), (e: unknown) => e instanceof WalshipError && e.exitCode === ExitCode.integrity);
    assert.deepEqual((await readdir(dir)).filter((f) => f.includes('forged')), []);
  });

  test('a storage failure mid-stream stops pg_dump and leaves nothing listed', async () => {
    await fakePgDump(64);
    const inner = new FileStorage(join(dir, 'repo2'));
    const storage = failingStorage(inner, 256 * 1024);
    await assert.rejects(pushDatabaseDump({ storage, encode: { compression: 'none' }, tools: tools() }, undefined), (e: unknown) => e instanceof WalshipError && e.exitCode === ExitCode.storage);
    assert.ok(storage.consumed() < 8 * 1024 * 1024, 'the stream stopped early, nothing buffered ahead');
    assert.deepEqual([...(await scanDumps(inner)).keys()], []);
  });

  test('pg_dump failing after its output is complete still fails the dump (exit 6, its message)', async () => {
    await fakePgDump(1, 1, 'pg_dump: error: query failed: server closed the connection unexpectedly');
    const storage = new FileStorage(join(dir, 'repo3'));
    await assert.rejects(pushDatabaseDump({ storage, encode: { compression: 'zstd' }, tools: tools() }, undefined), (e: unknown) => {
      assert.ok(e instanceof WalshipError && e.exitCode === ExitCode.postgres);
      assert.match(e.message, /pg_dump failed \(exit 1\): pg_dump: error: query failed: server closed the connection unexpectedly/);
      return true;
    });
    const names = [...(await scanDumps(storage)).keys()];
    assert.deepEqual(names, []);
    assert.equal(await readManifest(storage, 'dump_20000101T000000Z_app', undefined), undefined);
  });

  test('output that is not a custom-format archive is refused (exit 6)', async () => {
    await writeFile(join(bin, 'pg_dump'), '#!/bin/sh\necho "-- PostgreSQL database dump"\n');
    await chmod(join(bin, 'pg_dump'), 0o755);
    const storage = new FileStorage(join(dir, 'repo4'));
    await assert.rejects(pushDatabaseDump({ storage, encode: { compression: 'zstd' }, tools: tools() }, undefined), /not a pg_dump custom-format archive/);
  });

  test('a missing pg_dump names the setting (exit 2)', async () => {
    const storage = new FileStorage(join(dir, 'repo5'));
    const none = pgTools({ pgBinDir: join(dir, 'nowhere'), pghost: undefined, pgport: undefined, pguser: undefined, pgdatabase: undefined, pgpassword: undefined });
    await assert.rejects(pushDatabaseDump({ storage, encode: { compression: 'zstd' }, tools: none }, undefined), (e: unknown) => {
      assert.ok(e instanceof WalshipError && e.exitCode === ExitCode.usage);
      assert.match(e.message, /WALSHIP_PG_BIN_DIR/);
      return true;
    });
  });
});
