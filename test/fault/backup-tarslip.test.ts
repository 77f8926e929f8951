/**
 * backup-fetch against hand-made, hostile repositories (no PostgreSQL needed): tar entries that
 * are absolute, climb out with '..', plant a link leaving the target, or are not in the manifest;
 * manifests that lie; corrupted and incomplete parts. Every one is refused (exit 4, or 3 for a
 * non-empty target), nothing is written outside the target, and the target is left empty.
 * walship runs as root here, so a missing check could really write anywhere.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { after, describe, test } from 'node:test';
import { encodeObject, type Compression } from '../../src/codec/codec.ts';
import { generateIdentity } from '../../src/codec/age/index.ts';
import { encryptionFromConfig } from '../../src/codec/keys.ts';
import type { Config } from '../../src/config/settings.ts';
import { manifestFormat, writeManifest, type BackupManifest, type ManifestEntry } from '../../src/backup/manifest.ts';
import { endOfArchive, padding, tarHeader, type TarHeader } from '../../src/backup/tar.ts';
import { keys } from '../../src/repository.ts';
import { FileStorage } from '../../src/storage/file.ts';
import { walship } from '../integration/backup-support.ts';

const sysid = '7300000000000000042';
const root = await mkdtemp(join(tmpdir(), 'walship-tarslip-'));
after(() => rm(root, { recursive: true, force: true }));

interface Entry extends Partial<TarHeader> {
  name: string;
  content?: Buffer | string;
}

const tar = (entries: Entry[]) =>
  Buffer.concat([
    ...entries.flatMap((e) => {
      const body = Buffer.from(e.content ?? '');
      const type = e.type ?? 'file';
      return [tarHeader({ type, size: type === 'file' ? body.length : 0, mode: 0o600, mtime: 1_700_000_000, ...e, name: e.name }), ...(type === 'file' ? [body, padding(body.length)] : [])];
    }),
    endOfArchive,
  ]);

const controlFile = () => {
  const bytes = Buffer.alloc(8192);
  bytes.writeBigUInt64LE(BigInt(sysid), 0);
  bytes.writeUInt32LE(1300, 8);
  return bytes;
};

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const label = 'START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nSTART TIMELINE: 1\n';

/** A well-formed little backup: its files, as manifest entries and as tar entries of part 1. */
function legitimate(): { files: ManifestEntry[]; entries: Entry[] } {
  const files: ManifestEntry[] = [];
  const entries: Entry[] = [];
  const dir = (path: string) => {
    files.push({ path, type: 'dir', mode: 0o700, mtime: 1 });
    entries.push({ name: path, type: 'dir' });
  };
  const file = (path: string, content: Buffer | string) => {
    files.push({ path, type: 'file', mode: 0o600, mtime: 1, size: Buffer.byteLength(content), sha256: sha(content), part: 1 });
    entries.push({ name: path, content });
  };
  dir('global');
  dir('base');
  dir('base/1');
  dir('pg_wal');
  dir('pg_tblspc');
  file('PG_VERSION', '17\n');
  file('base/1/1259', Buffer.alloc(16384, 7));
  file('global/pg_control', controlFile());
  return { files, entries };
}

let count = 0;

/** Write a repository holding one backup made of `parts` and `files`; returns its config file. */
async function repository(options: { files: ManifestEntry[]; parts: Buffer[]; compression?: Compression; manifest?: Partial<BackupManifest>; encrypted?: boolean }): Promise<{ config: string; repo: string; name: string }> {
  const dir = join(root, `case${++count}`);
  const repo = join(dir, 'repo');
  await mkdir(repo, { recursive: true });
  const storage = new FileStorage(repo);
  const name = 'base_000000010000000000000002';
  await storage.put(keys.repositoryInfo, Buffer.from(JSON.stringify({ format: 1, systemIdentifier: sysid, created: new Date().toISOString() })));
  // Encrypted: a fresh identity beside the repository, objects sealed to its recipient.
  const keySettings: { recipients?: string[]; identityFile?: string } = {};
  if (options.encrypted) {
    const { identity, recipient } = generateIdentity();
    keySettings.identityFile = join(dir, 'key.txt');
    await writeFile(keySettings.identityFile, `${identity}\n`, { mode: 0o600 });
    keySettings.recipients = [recipient];
  }
  const encryption = options.encrypted ? await encryptionFromConfig(keySettings as Config) : undefined;
  const encode = { compression: options.compression ?? 'zstd', encryption };
  for (const [i, part] of options.parts.entries()) {
    await storage.put(keys.backupPart(name, i + 1), await buffer(await encodeObject(Readable.from([part]), encode)));
  }
  const manifest: BackupManifest = {
    format: manifestFormat,
    name,
    walshipVersion: 'test',
    pgVersion: 170000,
    pgMajor: 17,
    systemIdentifier: sysid,
    timeline: 1,
    startLsn: '0/2000028',
    stopLsn: '0/2000100',
    startWalFile: '000000010000000000000002',
    stopWalFile: '000000010000000000000002',
    startTime: '2026-11-27T14:00:00.000Z',
    stopTime: '2026-11-27T14:00:01.000Z',
    walSegmentSize: 16 << 20,
    blockSize: 8192,
    dataChecksums: true,
    codec: { compression: encode.compression, encrypted: options.encrypted === true },
    permanent: false,
    label: 'test',
    backupLabel: label,
    tablespaceMap: '',
    tablespaces: [],
    size: 0,
    storedSize: 0,
    durationMs: 1,
    verifyChecksums: false,
    checksumFailures: [],
    parts: options.parts.map((p, i) => ({ number: i + 1, size: p.length, storedSize: 0, files: 0 })),
    files: options.files,
    ...options.manifest,
  };
  await writeManifest(storage, manifest, encode);
  const config = join(dir, 'walship.json');
  await writeFile(config, JSON.stringify({ storage: `file://${repo}`, ...keySettings }));
  return { config, repo, name };
}

/** backup-fetch as root into a fresh target; returns the result and the target. */
async function fetch(config: string, name = 'LATEST') {
  const target = join(root, `target${++count}`);
  const r = await walship(['--config', config, 'backup-fetch', name, target], { asRoot: true });
  return { ...r, target };
}

async function assertRefused(r: { code: number; stderr: string; target: string }, pattern: RegExp, code = 4) {
  assert.equal(r.code, code, r.stderr);
  assert.match(r.stderr, pattern);
  assert.ok(!existsSync(r.target) || (await readdir(r.target)).length === 0, 'the target is left empty');
}

describe('backup-fetch refuses hostile and damaged backups', () => {
  test('a well-formed backup is laid out: 0700 directories, 0600 files, label from the manifest, pg_control in place', async () => {
    const { files, entries } = legitimate();
    const { config } = await repository({ files, parts: [tar(entries)] });
    const r = await fetch(config);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await stat(r.target)).mode & 0o777, 0o700);
    assert.equal((await stat(join(r.target, 'base/1'))).mode & 0o777, 0o700);
    assert.equal((await stat(join(r.target, 'base/1/1259'))).mode & 0o777, 0o600);
    assert.deepEqual(await readFile(join(r.target, 'global/pg_control')), controlFile());
    assert.equal(await readFile(join(r.target, 'backup_label'), 'utf8'), label);
    assert.deepEqual(await readdir(join(r.target, 'pg_wal')), []);
    assert.deepEqual((await readdir(join(r.target, 'global'))).sort(), ['pg_control']);
  });

  test('an absolute path in a part', async () => {
    const outside = join(root, 'absolute-victim');
    const { files, entries } = legitimate();
    const { config } = await repository({ files, parts: [tar([{ name: outside, content: 'pwned' }, ...entries])] });
    await assertRefused(await fetch(config), /refusing tar entry .*absolute path/);
    assert.ok(!existsSync(outside));
  });

  test("a '../' path in a part", async () => {
    const { files, entries } = legitimate();
    const { config } = await repository({ files, parts: [tar([...entries.slice(0, 3), { name: 'base/../../climbed', content: 'pwned' }, ...entries.slice(3)])] });
    await assertRefused(await fetch(config), /refusing tar entry "base\/\.\.\/\.\.\/climbed": path contains '\.\.'/);
    assert.ok(!existsSync(join(root, 'climbed')));
  });

  test('a symbolic link leaving the target, then a file written through it', async () => {
    const outside = join(root, 'link-victim');
    await mkdir(outside);
    const { files, entries } = legitimate();
    const { config } = await repository({ files, parts: [tar([{ name: 'pg_tblspc/evil', type: 'symlink', linkname: outside }, { name: 'pg_tblspc/evil/pwned', content: 'pwned' }, ...entries])] });
    await assertRefused(await fetch(config), /refusing tar entry "pg_tblspc\/evil": not in the backup manifest/);
    assert.deepEqual(await readdir(outside), []);
  });

  test('a manifest that lists a link leaving the target (absolute or through ..)', async () => {
    for (const target of [join(root, 'elsewhere'), '../../elsewhere']) {
      const { files, entries } = legitimate();
      files.push({ path: 'pg_tblspc/evil', type: 'symlink', mode: 0o777, mtime: 1, target });
      const { config } = await repository({ files, parts: [tar([{ name: 'pg_tblspc/evil', type: 'symlink', linkname: target }, ...entries])] });
      await assertRefused(await fetch(config), /invalid manifest: pg_tblspc\/evil: link target .* leaves the data directory/);
    }
  });

  test("a manifest with a '..' or absolute path", async () => {
    for (const path of ['../escaped', '/etc/escaped', 'base/./x']) {
      const { files, entries } = legitimate();
      files.push({ path, type: 'file', mode: 0o600, mtime: 1, size: 1, sha256: sha('x'), part: 1 });
      const { config } = await repository({ files, parts: [tar(entries)] });
      await assertRefused(await fetch(config), /invalid manifest/);
    }
  });

  test('an entry the manifest does not list; a hard link', async () => {
    const { files, entries } = legitimate();
    const cases: Entry[] = [{ name: 'base/1/smuggled', content: 'x' }];
    for (const extra of cases) {
      const { config } = await repository({ files, parts: [tar([...entries, extra])] });
      await assertRefused(await fetch(config), /refusing tar entry "base\/1\/smuggled": not in the backup manifest/);
    }
    // A hard link to a listed name, written raw (the writer has no hard links): type flag '1'.
    const link = tarHeader({ name: 'base/1/1259', type: 'symlink', size: 0, mode: 0o600, mtime: 1, linkname: '/etc/passwd' });
    link.write('1', 156, 'ascii');
    let sum = 0;
    link.fill(0x20, 148, 156);
    for (const b of link.subarray(0, 512)) sum += b;
    link.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
    const { config } = await repository({ files, parts: [Buffer.concat([link, tar(entries)])] });
    await assertRefused(await fetch(config), /refusing tar entry "base\/1\/1259": entry type link is not allowed/);
  });

  test('a file whose content does not match its SHA-256 (flipped bit, uncompressed part)', async () => {
    const { files, entries } = legitimate();
    const part = tar(entries);
    const at = part.indexOf(Buffer.alloc(64, 7));
    part[at + 10]! ^= 0x01;
    const { config } = await repository({ files, parts: [part], compression: 'none' });
    await assertRefused(await fetch(config), /base\/1\/1259 \(part 1\) does not match its SHA-256 in the manifest/);
  });

  test('a flipped bit in a compressed part', async () => {
    const { files, entries } = legitimate();
    const { config, repo, name } = await repository({ files, parts: [tar(entries)], compression: 'zstd' });
    const path = join(repo, keys.backupPart(name, 1));
    const bytes = await readFile(path);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x04;
    await writeFile(path, bytes);
    // zstd's own checksum is not checked (every file's SHA-256 is): the damage shows as a broken
    // frame, a tar header that fails its checksum, or a file that does not match the manifest.
    await assertRefused(await fetch(config), /corrupt|does not match|not a valid backup part/);
  });

  test('an encrypted part with a flipped bit, or cut short: exit 4, nothing left (decryption runs apart from unpacking)', async () => {
    const { files, entries } = legitimate();
    const good = await repository({ files, parts: [tar(entries)], encrypted: true });
    assert.equal((await fetch(good.config)).code, 0, 'the intact encrypted backup is fetched');
    for (const damage of ['flip', 'cut'] as const) {
      const { config, repo, name } = await repository({ files, parts: [tar(entries)], encrypted: true });
      const path = join(repo, keys.backupPart(name, 1));
      const bytes = await readFile(path);
      if (damage === 'flip') bytes[bytes.length - 40]! ^= 0x01;
      await writeFile(path, damage === 'flip' ? bytes : bytes.subarray(0, bytes.length - 30));
      await assertRefused(await fetch(config), /age decryption failed|truncated|corrupt/);
    }
  });

  test('a file listed in the manifest but absent from its part; a part missing from storage', async () => {
    const { files, entries } = legitimate();
    const { config } = await repository({ files, parts: [tar(entries.filter((e) => e.name !== 'base/1/1259'))] });
    await assertRefused(await fetch(config), /1 file\(s\) missing from their parts, e\.g\. base\/1\/1259 \(part 1\)/);

    const two = await repository({ files, parts: [tar(entries)] });
    const manifestPart2 = await repository({ files, parts: [tar(entries), tar([])] });
    await rm(join(manifestPart2.repo, keys.backupPart(manifestPart2.name, 2)));
    await assertRefused(await fetch(manifestPart2.config), /is damaged: part 2 \(backups\/base_000000010000000000000002\/parts\/0002\.tar\) is missing/);
    assert.equal((await fetch(two.config)).code, 0);
  });

  test('a failure in one part stops the parts being extracted in parallel (no hang, nothing left)', async () => {
    const { files, entries } = legitimate();
    const big = Buffer.alloc(64 << 20, 3);
    files.push({ path: 'base/1/big', type: 'file', mode: 0o600, mtime: 1, size: big.length, sha256: sha(big), part: 2 });
    files.push({ path: 'base/1/bad', type: 'file', mode: 0o600, mtime: 1, size: 3, sha256: sha('abc'), part: 1 });
    const { config } = await repository({ files, parts: [tar([{ name: 'base/1/bad', content: 'abd' }, ...entries]), tar([{ name: 'base/1/big', content: big }])] });
    const started = Date.now();
    await assertRefused(await fetch(config), /base\/1\/bad \(part 1\) does not match its SHA-256/);
    assert.ok(Date.now() - started < 60_000);
  });

  test('disk full while extracting: a one-line error naming the cause, exit 2, the target emptied again', { skip: process.getuid?.() !== 0 && 'needs root to mount a small tmpfs' }, async () => {
    const { files, entries } = legitimate();
    // The writes fail partway through a file larger than the filesystem, with its flushes in flight.
    const big = Buffer.alloc(40 << 20, 9);
    files.push({ path: 'base/1/big', type: 'file', mode: 0o600, mtime: 1, size: big.length, sha256: sha(big), part: 1 });
    const { config } = await repository({ files, parts: [tar([...entries, { name: 'base/1/big', content: big }])] });
    const small = join(root, 'small');
    await mkdir(small);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', small]);
    try {
      const target = join(small, 'data');
      const r = await walship(['--config', config, 'backup-fetch', 'LATEST', target], { asRoot: true });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /cannot write \S+: no space left on device; the target was emptied again/);
      assert.ok(!existsSync(target));
    } finally {
      execFileSync('umount', [small]);
    }
  });

  test('a non-empty target directory is refused (exit 3) and left alone', async () => {
    const { files, entries } = legitimate();
    const { config } = await repository({ files, parts: [tar(entries)] });
    const target = join(root, 'occupied');
    await mkdir(target);
    await writeFile(join(target, 'precious'), 'keep me');
    const r = await walship(['--config', config, 'backup-fetch', 'LATEST', target], { asRoot: true });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /is not empty/);
    assert.deepEqual(await readdir(target), ['precious']);
  });
});
