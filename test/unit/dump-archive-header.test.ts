/**
 * The pg_dump custom-format header parser (src/dump/archive-header.ts), on hand-built headers of
 * the 1.14 (pg_dump 15) and 1.15+ (pg_dump 16+) layouts, and on a real pg_dump 15 archive when the
 * system has pg_dump (the integration tests cover it end to end).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseArchiveHeader } from '../../src/dump/archive-header.ts';
import { int, str } from '../helpers/pg-dump-archive.ts';

function header(minor: number, database: string, server: string, dumpVersion: string): Buffer {
  return Buffer.concat([
    Buffer.from('PGDMP'),
    Buffer.from([1, minor, 0, 4, 8, 1]),
    minor >= 15 ? Buffer.from([0]) : int(-1),
    ...[48, 20, 3, 27, 10, 126, 0].map(int),
    str(database),
    str(server),
    str(dumpVersion),
    Buffer.from('rest of the TOC...'),
  ]);
}

describe('parseArchiveHeader', () => {
  test('reads pg_dump 15 (1.14) and 16+ (1.15, 1.16) headers', () => {
    assert.deepEqual(parseArchiveHeader(header(14, 'app', '15.18 (Debian)', '15.18 (Debian)')), {
      formatVersion: '1.14',
      database: 'app',
      serverVersion: '15.18 (Debian)',
      pgDumpVersion: '15.18 (Debian)',
    });
    for (const minor of [15, 16]) {
      const h = parseArchiveHeader(header(minor, 'naïve db', '17.2', '17.2'));
      assert.equal(h?.database, 'naïve db');
      assert.equal(h?.formatVersion, `1.${minor}`);
      assert.equal(h?.pgDumpVersion, '17.2');
    }
  });

  test('asks for more bytes while the header is incomplete, at every cut', () => {
    const full = header(14, 'app', '15.18', '15.18');
    const end = full.length - 'rest of the TOC...'.length;
    for (let cut = 0; cut < end; cut++) assert.equal(parseArchiveHeader(full.subarray(0, cut)), undefined, `cut at ${cut}`);
    assert.equal(parseArchiveHeader(full.subarray(0, end))?.serverVersion, '15.18');
  });

  test('rejects what is not a custom-format archive', () => {
    assert.throws(() => parseArchiveHeader(Buffer.from('--\n-- PostgreSQL database dump\n')), /no PGDMP magic/);
    const tar = header(14, 'a', 'b', 'c');
    tar[10] = 3; // format: tar
    assert.throws(() => parseArchiveHeader(tar), /not custom/);
  });
});
