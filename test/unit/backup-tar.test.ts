import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { blockSize, endOfArchive, padding, tarHeader, TarReader, type TarEntry, type TarHeader } from '../../src/backup/tar.ts';

interface Item {
  header: TarHeader;
  body: Buffer;
}

function archive(items: Item[]): Buffer {
  return Buffer.concat([...items.flatMap((i) => [tarHeader(i.header), i.body, padding(i.body.length)]), endOfArchive]);
}

/** Read an archive with walship's TarReader, fed in pieces cut at `cuts` (offsets into the bytes). */
function read(bytes: Buffer, cuts: number[] = []): { entry: TarEntry; body: Buffer }[] {
  const out: { entry: TarEntry; body: Buffer[] }[] = [];
  const reader = new TarReader({
    entry: (entry) => void out.push({ entry, body: [] }),
    // Copied: the reader's chunks are only valid during the call.
    data: (chunk) => void out.at(-1)!.body.push(Buffer.from(chunk)),
    entryEnd: () => {},
  });
  let at = 0;
  for (const cut of [...cuts.filter((c) => c < bytes.length)].sort((a, b) => a - b).concat(bytes.length)) {
    reader.push(bytes.subarray(at, cut));
    at = cut;
  }
  reader.end();
  return out.map((e) => ({ entry: e.entry, body: Buffer.concat(e.body) }));
}

const segment = fc.stringMatching(/^[A-Za-z0-9_.é\- ]{1,40}$/).filter((s) => s !== '.' && s !== '..');
const path = fc.array(segment, { minLength: 1, maxLength: 6 }).map((parts) => parts.join('/'));

test('the reader gets back what the writer wrote, however the bytes are cut: names of any length, bodies, links', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          name: path,
          kind: fc.constantFrom('file', 'dir', 'symlink'),
          body: fc.uint8Array({ maxLength: 3000 }),
          mode: fc.integer({ min: 0, max: 0o7777 }),
          mtime: fc.integer({ min: 0, max: 2 ** 33 - 1 }),
          link: path,
        }),
        { maxLength: 8 },
      ),
      fc.array(fc.nat({ max: 40_000 }), { maxLength: 12 }),
      (specs, cuts) => {
        const items: Item[] = specs.map((s) => {
          const body = s.kind === 'file' ? Buffer.from(s.body) : Buffer.alloc(0);
          return { header: { name: s.name, type: s.kind as TarHeader['type'], size: body.length, mode: s.mode, mtime: s.mtime, ...(s.kind === 'symlink' ? { linkname: s.link } : {}) }, body };
        });
        const bytes = archive(items);
        assert.equal(bytes.length % blockSize, 0);
        const back = read(bytes, cuts);
        assert.equal(back.length, items.length);
        for (const [i, item] of items.entries()) {
          const { entry, body } = back[i]!;
          assert.equal(entry.name.replace(/\/$/, ''), item.header.name);
          assert.equal(entry.type, { file: 'file', dir: 'directory', symlink: 'symlink', pax: '' }[item.header.type]);
          assert.equal(entry.size, item.body.length);
          assert.deepEqual(body, item.body);
          if (item.header.type === 'symlink') assert.equal(entry.linkname, item.header.linkname);
        }
      },
    ),
    { numRuns: 150 },
  );
});

test('GNU tar lists long and non-ASCII names from the pax headers', () => {
  const long = `pg_tblspc/16390/PG_17_202406281/${'d'.repeat(90)}/16391_vm`;
  const bytes = archive([
    { header: { name: long, type: 'file', size: 3, mode: 0o600, mtime: 1 }, body: Buffer.from('abc') },
    { header: { name: 'base/é', type: 'dir', size: 0, mode: 0o700, mtime: 1 }, body: Buffer.alloc(0) },
  ]);
  const listed = execFileSync('tar', ['-t'], { input: bytes, encoding: 'utf8' }).trim().split('\n');
  assert.deepEqual(listed, [long, 'base/é/']);
});

test('a size beyond 8 GiB goes into a pax header', async () => {
  const header = tarHeader({ name: 'big', type: 'file', size: 2 ** 34, mode: 0o600, mtime: 1 });
  assert.equal(header.length, 3 * blockSize);
  assert.match(header.subarray(blockSize, 2 * blockSize).toString(), /\d+ size=17179869184\n/);
});

test('the reader reads what GNU tar writes in pax and ustar formats (long and non-ASCII names, a link), and refuses damage', () => {
  const dir = mkdtempSync(join(tmpdir(), 'walship-tar-'));
  try {
    const long = `${'d'.repeat(120)}/é`;
    mkdirSync(join(dir, 'src', long), { recursive: true });
    writeFileSync(join(dir, 'src', long, 'f'), 'hello');
    symlinkSync('f', join(dir, 'src', long, 'l'));
    const bytes = execFileSync('tar', ['--format=pax', '-C', join(dir, 'src'), '-c', '.']);
    const back = read(bytes, [100, 513, 1500]);
    const file = back.find((e) => e.entry.name === `./${long}/f`);
    assert.ok(file, back.map((e) => e.entry.name).join(', '));
    assert.equal(file.entry.type, 'file');
    assert.equal(file.body.toString(), 'hello');
    assert.ok(back.some((e) => e.entry.name.replace(/\/$/, '') === `./${long}` && e.entry.type === 'directory'));
    assert.ok(back.some((e) => e.entry.name === `./${long}/l` && e.entry.type === 'symlink' && e.entry.linkname === 'f'));

    // ustar proper: a long name split into prefix and name.
    const ustarDir = `${'p'.repeat(60)}/${'q'.repeat(60)}`;
    mkdirSync(join(dir, 'src2', ustarDir), { recursive: true });
    writeFileSync(join(dir, 'src2', ustarDir, 'file'), 'x');
    const ustar = read(execFileSync('tar', ['--format=ustar', '-C', join(dir, 'src2'), '-c', ustarDir]));
    assert.ok(ustar.some((e) => e.entry.name === `${ustarDir}/file` && e.body.toString() === 'x'), ustar.map((e) => e.entry.name).join(', '));

    const flipped = Buffer.from(bytes);
    flipped[20]! ^= 1; // inside the first header's name: its checksum no longer matches
    assert.throws(() => read(flipped), /checksum/);
    assert.throws(() => read(bytes.subarray(0, 2 * blockSize + 10)), /truncated/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
