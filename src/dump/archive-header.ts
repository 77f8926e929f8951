/**
 * The header pg_dump writes at the start of a custom-format (-Fc) archive (pg_backup_archiver.c,
 * WriteHead): "PGDMP", format version, int and offset sizes, format, compression, creation time,
 * then the database name, the server's version and pg_dump's own version. Reading it from the
 * stream itself gives the manifest the facts of the dump that was actually taken, without a
 * second connection to the server.
 */
export interface ArchiveHeader {
  /** Archive format version, e.g. "1.14" (pg_dump 15), "1.15" (16). */
  formatVersion: string;
  database: string;
  serverVersion: string;
  pgDumpVersion: string;
}

/** Bytes that always hold the header of any real archive (names and versions are short). */
export const archiveHeaderMaxBytes = 64 * 1024;

const magic = Buffer.from('PGDMP');

/**
 * Parse the header from the first bytes of an archive. Returns undefined while `head` is too short
 * to tell (read more), and throws when the bytes are not a custom-format archive.
 */
export function parseArchiveHeader(head: Buffer): ArchiveHeader | undefined {
  if (head.length < magic.length) return undefined;
  if (!head.subarray(0, magic.length).equals(magic)) throw new Error('not a pg_dump custom-format archive (no PGDMP magic)');
  let at = magic.length;
  const need = (n: number) => {
    if (at + n > head.length) throw short;
  };
  const byte = () => {
    need(1);
    return head[at++]!;
  };
  let intSize = 4;
  const int = () => {
    const sign = byte();
    need(intSize);
    let value = 0;
    for (let i = 0; i < intSize; i++) value += head[at + i]! * 2 ** (8 * i);
    at += intSize;
    return sign ? -value : value;
  };
  const str = () => {
    const length = int();
    if (length < 0) return '';
    if (length > 4096) throw new Error(`archive header string of ${length} bytes`);
    need(length);
    const value = head.toString('utf8', at, at + length);
    at += length;
    return value;
  };
  try {
    const major = byte();
    const minor = byte();
    byte(); // revision
    intSize = byte();
    if (intSize < 1 || intSize > 8) throw new Error(`archive header claims ${intSize}-byte integers`);
    byte(); // offset size
    const format = byte();
    if (format !== 1) throw new Error(`archive format ${format} is not custom (1)`);
    if (major !== 1 || minor < 10) throw new Error(`archive format ${major}.${minor} is too old (1.10+ expected)`);
    // Compression: an int up to 1.14 (pg_dump 15), one byte (the algorithm) from 1.15 on.
    if (minor >= 15) byte();
    else int();
    for (let i = 0; i < 7; i++) int(); // creation time: sec, min, hour, mday, mon, year, isdst
    const database = str();
    const serverVersion = str();
    const pgDumpVersion = str();
    return { formatVersion: `${major}.${minor}`, database, serverVersion, pgDumpVersion };
  } catch (err) {
    if (err === short) {
      if (head.length >= archiveHeaderMaxBytes) throw new Error('archive header is not complete within 64 KiB');
      return undefined;
    }
    throw err;
  }
}

const short = new Error('short');
