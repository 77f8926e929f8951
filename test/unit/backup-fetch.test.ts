import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { after, test } from 'node:test';
import { encodeObject } from '../../src/codec/codec.ts';
import { fetchBackup } from '../../src/backup/fetch.ts';
import { manifestFormat, type BackupManifest, type ManifestEntry } from '../../src/backup/manifest.ts';
import { endOfArchive, padding, tarHeader } from '../../src/backup/tar.ts';
import { keys } from '../../src/repository.ts';
import { FileStorage } from '../../src/storage/file.ts';

const root = await mkdtemp(join(tmpdir(), 'walship-fetch-'));
after(() => rm(root, { recursive: true, force: true }));
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('a corrupt file in one of many parts fails the fetch promptly at any download concurrency: no hang, no leftovers', { timeout: 60_000 }, async () => {
  const repo = join(root, 'repo');
  await mkdir(repo);
  const storage = new FileStorage(repo);
  const files: ManifestEntry[] = [{ path: 'base', type: 'dir', mode: 0o700, mtime: 1 }];
  const name = 'base_000000010000000000000002';
  for (let part = 1; part <= 6; part++) {
    const chunks: Buffer[] = [];
    for (let f = 0; f < 8; f++) {
      const body = Buffer.alloc(256 * 1024, part * 16 + f);
      const path = `base/f${part}_${f}`;
      const corrupt = part === 3 && f === 4;
      files.push({ path, type: 'file', mode: 0o600, mtime: 1, size: body.length, sha256: corrupt ? '0'.repeat(64) : sha(body), part });
      chunks.push(tarHeader({ name: path, type: 'file', size: body.length, mode: 0o600, mtime: 1 }), body, padding(body.length));
    }
    chunks.push(endOfArchive);
    await storage.put(keys.backupPart(name, part), await buffer(await encodeObject(Readable.from([Buffer.concat(chunks)]), { compression: part % 2 ? 'none' : 'zstd' })));
  }
  const manifest = {
    format: manifestFormat,
    name,
    systemIdentifier: '1',
    backupLabel: 'label',
    tablespaceMap: '',
    tablespaces: [],
    size: 0,
    parts: Array.from({ length: 6 }, (_, i) => ({ number: i + 1, size: 0, storedSize: 0, files: 8 })),
    files,
  } as unknown as BackupManifest;
  for (let round = 0; round < 12; round++) {
    const target = join(root, `target${round}`);
    await assert.rejects(
      fetchBackup({ storage, encryption: undefined, backup: name, manifest, target, downloadConcurrency: 1 + (round % 4) }),
      (err: Error & { exitCode?: number }) => err.exitCode === 4 && /base\/f3_4 \(part 3\) does not match its SHA-256/.test(err.message),
    );
    assert.deepEqual(await readdir(root).then((names) => names.includes(`target${round}`)), false, 'a target fetch created is removed again');
  }
});

test('many downloads at once share one worker thread per core, and every file is laid down', { timeout: 60_000 }, async () => {
  const repo = join(root, 'repo-many');
  await mkdir(repo);
  const storage = new FileStorage(repo);
  const files: ManifestEntry[] = [{ path: 'base', type: 'dir', mode: 0o700, mtime: 1 }];
  const name = 'base_000000010000000000000004';
  const parts = 8;
  for (let part = 1; part <= parts; part++) {
    const body = Buffer.alloc(6 << 20, part);
    const path = `base/p${part}`;
    files.push({ path, type: 'file', mode: 0o600, mtime: 1, size: body.length, sha256: sha(body), part });
    const tar = Buffer.concat([tarHeader({ name: path, type: 'file', size: body.length, mode: 0o600, mtime: 1 }), body, padding(body.length), endOfArchive]);
    await storage.put(keys.backupPart(name, part), await buffer(await encodeObject(Readable.from([tar]), { compression: 'zstd' })));
  }
  const manifest = {
    format: manifestFormat,
    name,
    systemIdentifier: '1',
    backupLabel: 'label',
    tablespaceMap: '',
    tablespaces: [],
    size: 0,
    parts: Array.from({ length: parts }, (_, i) => ({ number: i + 1, size: 0, storedSize: 0, files: 1 })),
    files,
  } as unknown as BackupManifest;
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
  // One thread per worker (measured: +2 here on 2 cores; a worker per download added 8).
  assert.ok(most - before <= availableParallelism() + 2, `threads went from ${before} to ${most}`);
});
