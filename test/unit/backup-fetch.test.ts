import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { after, test } from 'node:test';
import { encodeObject, type Compression } from '../../src/codec/codec.ts';
import { fetchBackup } from '../../src/backup/fetch.ts';
import { manifestFormat, type BackupManifest, type ManifestEntry } from '../../src/backup/manifest.ts';
import { endOfArchive, padding, tarHeader } from '../../src/backup/tar.ts';
import { keys } from '../../src/repository.ts';
import { FileStorage } from '../../src/storage/file.ts';

const root = await mkdtemp(join(tmpdir(), 'walship-fetch-'));
after(() => rm(root, { recursive: true, force: true }));
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface HandMadeFile {
  path: string;
  body: Buffer;
  /** What the manifest says, when it is to lie. */
  sha256?: string;
}

/** A backup made by hand in a fresh file:// repository: one tar part per list of files; returns its storage and manifest. */
async function handMadeBackup(dir: string, name: string, parts: { files: HandMadeFile[]; compression: Compression }[]): Promise<{ storage: FileStorage; manifest: BackupManifest }> {
  const repo = join(root, dir);
  await mkdir(repo);
  const storage = new FileStorage(repo);
  const files: ManifestEntry[] = [{ path: 'base', type: 'dir', mode: 0o700, mtime: 1 }];
  for (const [i, { files: content, compression }] of parts.entries()) {
    const part = i + 1;
    const chunks: Buffer[] = [];
    for (const { path, body, sha256 } of content) {
      files.push({ path, type: 'file', mode: 0o600, mtime: 1, size: body.length, sha256: sha256 ?? sha(body), part });
      chunks.push(tarHeader({ name: path, type: 'file', size: body.length, mode: 0o600, mtime: 1 }), body, padding(body.length));
    }
    chunks.push(endOfArchive);
    await storage.put(keys.backupPart(name, part), await buffer(await encodeObject(Readable.from([Buffer.concat(chunks)]), { compression })));
  }
  const manifest = {
    format: manifestFormat,
    name,
    systemIdentifier: '1',
    backupLabel: 'label',
    tablespaceMap: '',
    tablespaces: [],
    size: 0,
    parts: parts.map((p, i) => ({ number: i + 1, size: 0, storedSize: 0, files: p.files.length })),
    files,
  } as unknown as BackupManifest;
  return { storage, manifest };
}

test('a corrupt file in one of many parts fails the fetch promptly at any download concurrency: no hang, no leftovers', { timeout: 60_000 }, async () => {
  const name = 'base_000000010000000000000002';
  const parts = Array.from({ length: 6 }, (_, i) => ({
    compression: (i % 2 ? 'zstd' : 'none') as Compression,
    files: Array.from({ length: 8 }, (_, f) => ({
      path: `base/f${i + 1}_${f}`,
      body: Buffer.alloc(256 * 1024, (i + 1) * 16 + f),
      ...(i + 1 === 3 && f === 4 ? { sha256: '0'.repeat(64) } : {}),
    })),
  }));
  const { storage, manifest } = await handMadeBackup('repo', name, parts);
  for (let round = 0; round < 12; round++) {
    const target = join(root, `target${round}`);
    await assert.rejects(
      fetchBackup({ storage, encryption: undefined, backup: name, manifest, target, downloadConcurrency: 1 + (round % 4) }),
      (err: Error & { exitCode?: number }) => err.exitCode === 4 && /base\/f3_4 \(part 3\) does not match its SHA-256/.test(err.message),
    );
    assert.deepEqual(await readdir(root).then((names) => names.includes(`target${round}`)), false, 'a target fetch created is removed again');
  }
});

for (const [n, compression] of (['zstd', 'lz4', 'none'] as const).entries()) {
  test(`${compression} parts are hashed on the hashing thread, a scratch buffer at a time: a large file that does not match its SHA-256 fails the fetch; matching ones pass`, { timeout: 60_000 }, async () => {
    const name = `base_00000001000000000000000${5 + n}`;
    // Files across many of the 1 MiB scratch buffers (and, for lz4, across its 4 MiB frames); the bad one lies only in its last byte.
    const big = (fill: number) => Buffer.alloc((5 << 20) + 12345, fill);
    const bad = big(2);
    const lie = Buffer.from(bad);
    lie[lie.length - 1]! ^= 1;
    const good = [{ path: 'base/ok1', body: big(1) }, { path: 'base/small', body: Buffer.from('x') }];
    const { storage, manifest } = await handMadeBackup(`repo-thread-hash-${compression}`, name, [
      { compression, files: good },
      { compression, files: [{ path: 'base/bad', body: bad, sha256: sha(lie) }, { path: 'base/ok2', body: big(3) }] },
    ]);
    const target = join(root, `target-thread-hash-${compression}`);
    await assert.rejects(
      fetchBackup({ storage, encryption: undefined, backup: name, manifest, target, downloadConcurrency: 2 }),
      (err: Error & { exitCode?: number }) => err.exitCode === 4 && /base\/bad \(part 2\) does not match its SHA-256/.test(err.message),
    );
    assert.deepEqual((await readdir(root)).includes(`target-thread-hash-${compression}`), false, 'nothing left behind');

    // The same files, all matching: every one is verified, and only then is the hand-made backup
    // found to lack pg_control (the bytes laid down are compared in the integration tests).
    const intact = await handMadeBackup(`repo-thread-hash-ok-${compression}`, name, [{ compression, files: good }]);
    await assert.rejects(fetchBackup({ storage: intact.storage, encryption: undefined, backup: name, manifest: intact.manifest, target, downloadConcurrency: 2 }), /pg_control is missing/);
  });
}

test('many downloads at once share one worker thread per core, and every file is laid down', { timeout: 60_000 }, async () => {
  const name = 'base_000000010000000000000004';
  const parts = Array.from({ length: 8 }, (_, i) => ({ compression: 'zstd' as Compression, files: [{ path: `base/p${i + 1}`, body: Buffer.alloc(6 << 20, i + 1) }] }));
  const { storage, manifest } = await handMadeBackup('repo-many', name, parts);
  // Threads of this process, sampled while the fetch runs (libuv's pool already runs: the parts were stored through it).
  const threads = () => Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
  const before = threads();
  let most = before;
  const sampler = setInterval(() => (most = Math.max(most, threads())), 2);
  const target = join(root, 'target-many');
  try {
    // pg_control is missing from this hand-made backup: the fetch fails after laying every part down.
    await assert.rejects(fetchBackup({ storage, encryption: undefined, backup: name, manifest, target, downloadConcurrency: 8 }), /pg_control is missing/);
  } finally {
    clearInterval(sampler);
  }
  // A worker per core, each with its hashing thread (measured: +4 here on 2 cores; a worker per download added 8 and their hashers 8 more).
  assert.ok(most - before <= 2 * availableParallelism() + 2, `threads went from ${before} to ${most}`);
});

/**
 * Fetches hand-made backups of large files (sizes at and around the direct-write threshold of
 * 4 MiB, the 1 MiB stages and the 4 KiB blocks) into `into`, for every compression, and checks
 * every byte and every size on disk.
 */
async function fetchLargeFiles(into: string, label: string): Promise<void> {
  const MiB = 1 << 20;
  const sizes = [4 * MiB, 4 * MiB + 1, 4 * MiB + 4095, 5 * MiB + 12345, 7 * MiB + 3 * 4096, 9 * MiB - 1];
  const noise = (size: number, seed: number) => {
    const out = Buffer.alloc(size);
    let x = seed | 1;
    for (let i = 0; i < size; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      out.writeInt32LE(x, i - (i + 4 > size ? i + 4 - size : 0));
    }
    return out;
  };
  const control = Buffer.alloc(8192);
  control.writeBigUInt64LE(1n, 0); // the system identifier the hand-made manifest names
  control.writeUInt32LE(1300, 8);
  for (const [n, compression] of (['zstd', 'lz4', 'none'] as const).entries()) {
    const name = `base_00000001000000000000001${n}`;
    const files = sizes.map((size, i) => ({ path: `base/big${i}`, body: noise(size, size + i + n) }));
    const { storage, manifest } = await handMadeBackup(`repo-${label}-${compression}`, name, [
      { compression, files: [...files.slice(0, 3), { path: 'base/small', body: Buffer.from('between the large ones') }, ...files.slice(3)] },
      { compression, files: [{ path: 'global/pg_control', body: control }] },
    ]);
    manifest.files.push({ path: 'global', type: 'dir', mode: 0o700, mtime: 1 });
    const target = join(into, `target-${label}-${compression}`);
    await fetchBackup({ storage, encryption: undefined, backup: name, manifest, target, downloadConcurrency: 2 });
    for (const { path, body } of files) {
      const onDisk = readFileSync(join(target, path));
      assert.equal(onDisk.length, body.length, `${compression}: ${path} size`);
      assert.ok(onDisk.equals(body), `${compression}: ${path} bytes`);
    }
    assert.equal(readFileSync(join(target, 'base/small'), 'utf8'), 'between the large ones');
    assert.ok(readFileSync(join(target, 'global/pg_control')).equals(control));
  }
}

test('large files, written with O_DIRECT from staging buffers: every byte and every size on disk as in the backup, whatever the compression', { timeout: 60_000 }, async () => {
  await fetchLargeFiles(root, 'direct');
});

test('a filesystem that refuses O_DIRECT (ramfs): large files go through the page cache instead, byte for byte', { timeout: 60_000, skip: process.getuid?.() !== 0 && 'needs root to mount a ramfs' }, async () => {
  const ramfs = join(root, 'ramfs');
  await mkdir(ramfs);
  execFileSync('mount', ['-t', 'ramfs', 'ramfs', ramfs]);
  try {
    await fetchLargeFiles(ramfs, 'ramfs');
  } finally {
    execFileSync('umount', [ramfs]);
  }
});
