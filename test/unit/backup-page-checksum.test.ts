import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { checkPage, isNewPage, pageChecksum, relationSegment, storedChecksum } from '../../src/pg/page-checksum.ts';

/** Block 0 of a heap written by PostgreSQL 15 with data checksums (two rows), as non-zero runs: [offset, hex]. */
const realPage: [number, string][] = [
  [4, '40477601387400002000a81f0020042000000000d89f4800a89f54'],
  [8104, 'd502'],
  [8120, '0200020002081800070000001d7061676520636865636b73756d000000000000d502'],
  [8168, '01000200020818002a0000001177616c73686970'],
];
const page = () => {
  const bytes = Buffer.alloc(8192);
  for (const [offset, hex] of realPage) Buffer.from(hex, 'hex').copy(bytes, offset);
  return bytes;
};

test('pageChecksum reproduces the checksum PostgreSQL stored on a real page', () => {
  const p = page();
  assert.equal(storedChecksum(p), 29752);
  assert.equal(pageChecksum(p, 0), 29752);
  assert.deepEqual(checkPage(p, 0), { ok: true, expected: 29752, actual: 29752 });
});

test('the block number is part of the checksum (a page moved elsewhere fails)', () => {
  assert.notEqual(pageChecksum(page(), 1), 29752);
  assert.equal(checkPage(page(), 131072).ok, false);
});

test('a flipped bit anywhere outside pd_checksum fails the check', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 8191 }).filter((at) => at !== 8 && at !== 9), fc.integer({ min: 0, max: 7 }), (at, bit) => {
      const p = page();
      p[at]! ^= 1 << bit;
      // pd_upper (14-15) at zero would make it a "new" page, which must then be all zeros: also a failure.
      return !checkPage(p, 0).ok;
    }),
    { numRuns: 300, seed: 5 },
  );
});

test('the stored checksum field does not influence the computed one; results stay in 1..65535', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 8192, maxLength: 8192 }), fc.integer({ min: 0, max: 0xffff }), fc.nat(), (bytes, stored, block) => {
      const p = Buffer.from(bytes);
      const sum = pageChecksum(p, block);
      p.writeUInt16LE(stored, 8);
      return pageChecksum(p, block) === sum && sum >= 1 && sum <= 65535;
    }),
    { numRuns: 50 },
  );
});

test('unaligned buffers give the same answer', () => {
  const big = Buffer.alloc(8192 + 3);
  page().copy(big, 3);
  assert.equal(pageChecksum(big.subarray(3), 0), 29752);
});

test('new (all-zero) pages pass; a "new" page with data fails', () => {
  const zero = Buffer.alloc(8192);
  assert.ok(isNewPage(zero));
  assert.equal(checkPage(zero, 5).ok, true);
  zero[100] = 1;
  assert.equal(checkPage(zero, 5).ok, false);
});

test('relationSegment: which files carry page checksums, and their segment number', () => {
  assert.equal(relationSegment('base/5/16384'), 0);
  assert.equal(relationSegment('base/5/16384.3'), 3);
  assert.equal(relationSegment('base/5/16384_fsm'), 0);
  assert.equal(relationSegment('base/5/16384_vm.1'), 1);
  assert.equal(relationSegment('global/1262'), 0);
  assert.equal(relationSegment('pg_tblspc/16390/PG_17_202406281/5/16391.2'), 2);
  for (const other of ['global/pg_control', 'base/5/PG_VERSION', 'base/5/pg_filenode.map', 'base/5/t3_16384', 'pg_xact/0000', 'base/5/pg_internal.init', 'postgresql.conf']) {
    assert.equal(relationSegment(other), undefined, other);
  }
});
