/**
 * Data page checksums (storage/checksum_impl.h): FNV-1a-like mixing over the page seen as 32
 * parallel columns of 32-bit words, the pd_checksum field counted as zero, then two rounds of
 * zeros, the columns xor-folded, the block number mixed in, reduced to 1..65535.
 */
const nSums = 32;
const fnvPrime = 16777619;
const baseOffsets = Uint32Array.of(
  0x5b1f36e9, 0xb8525960, 0x02ab50aa, 0x1de66d2a, 0x79ff467a, 0x9bb9f8a3, 0x217e7cd2, 0x83e13d2c,
  0xf8d4474f, 0xe39eb970, 0x42c6ae16, 0x993216fa, 0x7b093b5d, 0x98daff3c, 0xf718902a, 0x0b1c9cdb,
  0xe58f764b, 0x187636bc, 0x5d7b3bb1, 0xe73de7de, 0x92bec979, 0xcca6c0b2, 0x304a0979, 0x85aa43d4,
  0x783125bb, 0x6ca8eaa2, 0xe407eac6, 0x4b5cfc3e, 0x9fbf8c76, 0x15ca20be, 0xf2ca9fd3, 0x959bd756,
);

/** Byte offsets in PageHeaderData: pd_lsn u64 @0, pd_checksum u16 @8, pd_flags @10, pd_lower @12, pd_upper @14. */
export const pageHeader = { lsn: 0, checksum: 8, upper: 14 } as const;

const sums = new Uint32Array(nSums);

/** pg_checksum_page(page, blkno). `page` is one whole block (BLCKSZ bytes, a multiple of 128), little-endian words. */
export function pageChecksum(page: Buffer, blockNumber: number): number {
  const words = page.length >>> 2;
  if (words === 0 || words % nSums !== 0) throw new Error(`page size ${page.length} is not a multiple of ${nSums * 4}`);
  const view = page.byteOffset % 4 === 0 ? new Uint32Array(page.buffer, page.byteOffset, words) : new Uint32Array(Uint8Array.from(page).buffer);
  sums.set(baseOffsets);
  // Word 2 holds pd_checksum (low half on little-endian) and pd_flags (high half).
  const word2 = view[2]! & 0xffff0000;
  for (let i = 0; i < words; i += nSums) {
    for (let j = 0; j < nSums; j++) {
      const value = i + j === 2 ? word2 : view[i + j]!;
      const tmp = (sums[j]! ^ value) >>> 0;
      sums[j] = Math.imul(tmp, fnvPrime) ^ (tmp >>> 17);
    }
  }
  for (let round = 0; round < 2; round++) {
    for (let j = 0; j < nSums; j++) {
      const tmp = sums[j]! >>> 0;
      sums[j] = Math.imul(tmp, fnvPrime) ^ (tmp >>> 17);
    }
  }
  let result = 0;
  for (let j = 0; j < nSums; j++) result ^= sums[j]!;
  result = (result ^ blockNumber) >>> 0;
  return (result % 65535) + 1;
}

export const storedChecksum = (page: Buffer) => page.readUInt16LE(pageHeader.checksum);
export const pageLsn = (page: Buffer) => (BigInt(page.readUInt32LE(0)) << 32n) | BigInt(page.readUInt32LE(4));
/** PageIsNew: pd_upper == 0. PostgreSQL does not checksum new (all-zero) pages. */
export const isNewPage = (page: Buffer) => page.readUInt16LE(pageHeader.upper) === 0;

export interface PageCheck {
  ok: boolean;
  expected: number;
  actual: number;
}

/** Check one page as pg_basebackup does: new pages pass, other pages must carry their checksum. */
export function checkPage(page: Buffer, blockNumber: number): PageCheck {
  const actual = storedChecksum(page);
  if (isNewPage(page)) return { ok: page.every((b) => b === 0), expected: 0, actual };
  const expected = pageChecksum(page, blockNumber);
  return { ok: expected === actual, expected, actual };
}

/**
 * Which files carry page checksums: relation forks in base/<db>/, global/ and tablespace database
 * directories, named <relfilenode>[_fsm|_vm|_init][.<segment>]. Returns the 1 GiB segment number
 * (the first block of the file is segment × blocks-per-segment), or undefined for other files.
 */
export function relationSegment(path: string): number | undefined {
  const m = /^(?:base\/\d+|global|pg_tblspc\/\d+\/PG_[^/]+\/\d+)\/\d+(?:_(?:fsm|vm|init))?(?:\.(\d+))?$/.exec(path);
  if (!m) return undefined;
  return m[1] === undefined ? 0 : Number(m[1]);
}
