import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import fc from 'fast-check';
import { extract } from 'tar-stream';
import { blockSize, endOfArchive, padding, tarHeader, type TarHeader } from '../../src/backup/tar.ts';

interface Item {
  header: TarHeader;
  body: Buffer;
}

function archive(items: Item[]): Buffer {
  return Buffer.concat([...items.flatMap((i) => [tarHeader(i.header), i.body, padding(i.body.length)]), endOfArchive]);
}

async function read(bytes: Buffer): Promise<{ name: string; type: string; size: number; linkname: string | null; mode: number; mtime: number; body: Buffer }[]> {
  const ex = extract();
  Readable.from([bytes]).pipe(ex);
  const out = [];
  for await (const entry of ex) {
    const chunks: Buffer[] = [];
    for await (const c of entry) chunks.push(c as Buffer);
    const h = entry.header;
    out.push({ name: h.name, type: String(h.type), size: h.size ?? 0, linkname: h.linkname ?? null, mode: h.mode ?? 0, mtime: Math.floor((h.mtime?.getTime() ?? 0) / 1000), body: Buffer.concat(chunks) });
  }
  return out;
}

const segment = fc.stringMatching(/^[A-Za-z0-9_.é\- ]{1,40}$/).filter((s) => s !== '.' && s !== '..');
const path = fc.array(segment, { minLength: 1, maxLength: 6 }).map((parts) => parts.join('/'));

test('tar-stream reads back what the writer wrote: names of any length, bodies, modes, times, links', async () => {
  await fc.assert(
    fc.asyncProperty(
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
      async (specs) => {
        const items: Item[] = specs.map((s) => {
          const body = s.kind === 'file' ? Buffer.from(s.body) : Buffer.alloc(0);
          return { header: { name: s.name, type: s.kind as TarHeader['type'], size: body.length, mode: s.mode, mtime: s.mtime, ...(s.kind === 'symlink' ? { linkname: s.link } : {}) }, body };
        });
        const bytes = archive(items);
        assert.equal(bytes.length % blockSize, 0);
        const back = await read(bytes);
        assert.equal(back.length, items.length);
        for (const [i, item] of items.entries()) {
          const got = back[i]!;
          assert.equal(got.name.replace(/\/$/, ''), item.header.name);
          assert.equal(got.type, { file: 'file', dir: 'directory', symlink: 'symlink', pax: '' }[item.header.type]);
          assert.deepEqual(got.body, item.body);
          assert.equal(got.mode, item.header.mode);
          assert.equal(got.mtime, item.header.mtime);
          if (item.header.type === 'symlink') assert.equal(got.linkname, item.header.linkname);
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
