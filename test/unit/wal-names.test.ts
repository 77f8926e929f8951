import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  formatLsn,
  isValidSegmentSize,
  lsnOfSegment,
  parseLsn,
  parseWalFileName,
  segmentFileName,
  segmentNumber,
  segmentOfLsn,
} from '../../src/pg/wal-names.ts';

const MiB = 1024 * 1024;
/** wal_segment_size: every power of two from 1 MiB to 1 GiB. */
const segmentSizes = Array.from({ length: 11 }, (_, i) => MiB << i);
const segmentSize = fc.constantFrom(...segmentSizes);
const timeline = fc.integer({ min: 1, max: 0xffffffff });
/** Segment numbers whose LSNs fit in 64 bits, for a given segment size. */
const segNoFor = (size: number) => fc.bigInt({ min: 0n, max: (1n << 64n) / BigInt(size) - 1n });
const lsn = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const hex = (n: number | bigint, width: number) => n.toString(16).toUpperCase().padStart(width, '0');

describe('WAL segment names', () => {
  test('the segment sizes PostgreSQL allows are exactly the powers of two from 1 MiB to 1 GiB', () => {
    for (const size of segmentSizes) assert.ok(isValidSegmentSize(size), `${size}`);
    for (const size of [0, MiB / 2, MiB + 1, 3 * MiB, 2 * 1024 * MiB, 16 * MiB - 8192]) assert.ok(!isValidSegmentSize(size), `${size}`);
  });

  test('known names: 16 MiB segments split the number at 256 per log, 1 GiB at 4', () => {
    assert.equal(segmentFileName(1, 1n, 16 * MiB), '000000010000000000000001');
    assert.equal(segmentFileName(1, 256n, 16 * MiB), '000000010000000100000000');
    assert.equal(segmentFileName(2, 0x1ffn, 16 * MiB), '0000000200000001000000FF');
    assert.equal(segmentFileName(1, 5n, 1024 * MiB), '000000010000000100000001');
    assert.equal(segmentFileName(0x1a, 4096n, MiB), '0000001A0000000100000000');
    assert.equal(segmentNumber('00000001000000FF', 16 * MiB), 0x1ffn);
  });

  test('format then parse gives back timeline and segment number, for every segment size', () => {
    fc.assert(
      fc.property(
        segmentSize.chain((size) => fc.tuple(fc.constant(size), timeline, segNoFor(size))),
        ([size, tli, segNo]) => {
          const name = segmentFileName(tli, segNo, size);
          assert.match(name, /^[0-9A-F]{24}$/);
          const parsed = parseWalFileName(name);
          assert.ok(parsed);
          assert.equal(parsed.kind, 'segment');
          assert.equal(parsed.timeline, tli);
          assert.equal(segmentNumber(parsed.segmentId!, size), segNo);
          // The last 8 digits never reach 4 GiB / segment size.
          assert.ok(parseInt(name.slice(16), 16) < 0x1_0000_0000 / size);
        },
      ),
      { numRuns: 2000 },
    );
  });

  test('names sort in segment order within a timeline', () => {
    fc.assert(
      fc.property(
        segmentSize.chain((size) => fc.tuple(fc.constant(size), timeline, segNoFor(size), segNoFor(size))),
        ([size, tli, a, b]) => {
          const [na, nb] = [segmentFileName(tli, a, size), segmentFileName(tli, b, size)];
          assert.equal(na < nb, a < b);
        },
      ),
    );
  });
});

describe('LSNs', () => {
  test('known values', () => {
    assert.equal(parseLsn('0/16B3748'), 0x16b3748n);
    assert.equal(parseLsn('1/0'), 1n << 32n);
    assert.equal(parseLsn('ffffffff/ffffffff'), (1n << 64n) - 1n);
    assert.equal(formatLsn(0x1_0000_0028n), '1/28');
    assert.equal(formatLsn(0n), '0/0');
  });

  test('format then parse is the identity, and the format is what PostgreSQL prints', () => {
    fc.assert(
      fc.property(lsn, (value) => {
        const text = formatLsn(value);
        assert.match(text, /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/);
        assert.equal(parseLsn(text), value);
        assert.equal(parseLsn(text.toLowerCase()), value);
      }),
      { numRuns: 2000 },
    );
  });

  test('parse rejects what is not X/Y hex with at most 8 digits each side', () => {
    for (const bad of ['', '/', '0/', '/0', '0x0/0', '0/123456789', '123456789/0', 'G/0', '0/0/0', '0:0', '-1/0', '0 / 0']) {
      assert.throws(() => parseLsn(bad), /not an LSN/, bad);
    }
  });

  test('segmentOfLsn and lsnOfSegment agree: a segment starts at its LSN and holds the next size-1 bytes', () => {
    fc.assert(
      fc.property(
        segmentSize.chain((size) => fc.tuple(fc.constant(size), lsn)),
        ([size, value]) => {
          const segNo = segmentOfLsn(value, size);
          const start = lsnOfSegment(segNo, size);
          assert.ok(start <= value && value < start + BigInt(size));
          assert.equal(segmentOfLsn(start, size), segNo);
          assert.equal(start % BigInt(size), 0n);
        },
      ),
      { numRuns: 2000 },
    );
  });

  test('the segment name of an LSN matches pg_walfile_name for 16 MiB and 1 GiB segments', () => {
    // SELECT pg_walfile_name('1/2345678') on timeline 1 with 16 MiB segments: 000000010000000100000002.
    assert.equal(segmentFileName(1, segmentOfLsn(parseLsn('1/2345678'), 16 * MiB), 16 * MiB), '000000010000000100000002');
    assert.equal(segmentFileName(3, segmentOfLsn(parseLsn('2/C0000000'), 1024 * MiB), 1024 * MiB), '000000030000000200000003');
  });
});

describe('parseWalFileName', () => {
  test('accepts every kind PostgreSQL archives', () => {
    assert.deepEqual(parseWalFileName('000000010000000A000000FF'), {
      name: '000000010000000A000000FF',
      kind: 'segment',
      timeline: 1,
      segmentId: '0000000A000000FF',
    });
    assert.deepEqual(parseWalFileName('00000002000000000000003C.partial'), {
      name: '00000002000000000000003C.partial',
      kind: 'partial',
      timeline: 2,
      segmentId: '000000000000003C',
    });
    assert.deepEqual(parseWalFileName('000000010000000000000002.00000028.backup'), {
      name: '000000010000000000000002.00000028.backup',
      kind: 'backup',
      timeline: 1,
      segmentId: '0000000000000002',
    });
    assert.deepEqual(parseWalFileName('0000000A.history'), { name: '0000000A.history', kind: 'history', timeline: 10 });
  });

  test('accepts generated names of every kind', () => {
    fc.assert(
      fc.property(timeline, fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.integer({ min: 0, max: 0xffffffff }), (tli, id, offset) => {
        const base = hex(tli, 8) + hex(id, 16);
        assert.equal(parseWalFileName(base)?.kind, 'segment');
        assert.equal(parseWalFileName(`${base}.partial`)?.kind, 'partial');
        assert.equal(parseWalFileName(`${base}.${hex(offset, 8)}.backup`)?.kind, 'backup');
        assert.equal(parseWalFileName(`${hex(tli, 8)}.history`)?.timeline, tli);
      }),
    );
  });

  test('rejects lowercase, wrong lengths, paths and garbage', () => {
    for (const bad of [
      '',
      '000000010000000a000000ff',
      '00000001000000000000001',
      '0000000100000000000000011',
      '000000010000000000000001.PARTIAL',
      '000000010000000000000001.partial.tmp',
      '000000010000000000000001.0000028.backup',
      '000000010000000000000001.backup',
      '000000010000000000000001.00000028.Backup',
      '0000000a.history',
      '000000001.history',
      '0000001.history',
      '00000001.History',
      'pg_wal/000000010000000000000001',
      '/000000010000000000000001',
      ' 000000010000000000000001',
      '000000010000000000000001\n',
      'RECOVERYXLOG',
      'RECOVERYHISTORY',
      'archive_status',
      '000000010000000000000001.ready',
      '00000001000000000000000G',
    ]) {
      assert.equal(parseWalFileName(bad), undefined, JSON.stringify(bad));
    }
  });

  test('arbitrary strings never throw; whatever it accepts is an upper-case hex WAL name', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.stringMatching(/^[0-9A-Fa-f.]{0,40}(partial|backup|history)?$/)), (text) => {
        const parsed = parseWalFileName(text);
        if (parsed) assert.match(parsed.name, /^[0-9A-F]{8}([0-9A-F]{16}(\.partial|\.[0-9A-F]{8}\.backup)?|\.history)$/);
      }),
      { numRuns: 3000 },
    );
  });
});
