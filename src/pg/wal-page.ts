/**
 * The long page header at the start of every WAL segment (xlog_internal.h, XLogLongPageHeaderData):
 * magic u16, info u16, timeline u32, pageaddr u64, rem_len u32, pad, sysid u64 @24, seg_size u32 @32,
 * xlog_blcksz u32 @36. Reading it lets walship check a segment against its name before storing it.
 */
export interface WalSegmentHeader {
  magic: number;
  /** PostgreSQL major version the magic belongs to, when known. */
  pgMajor: number | undefined;
  timeline: number;
  pageAddress: bigint;
  systemIdentifier: bigint;
  segmentSize: number;
  blockSize: number;
}

export const longHeaderSize = 40;
const longHeaderFlag = 0x0002;

/** XLOG_PAGE_MAGIC per major version. */
export const walMagicByMajor: Record<number, number> = { 14: 0xd10d, 15: 0xd110, 16: 0xd113, 17: 0xd116, 18: 0xd118 };
const majorByMagic = new Map(Object.entries(walMagicByMajor).map(([major, magic]) => [magic, Number(major)]));

/** Parse the first bytes of a segment, or undefined if they are not a long WAL page header. */
export function parseSegmentHeader(head: Buffer): WalSegmentHeader | undefined {
  if (head.length < longHeaderSize) return undefined;
  const magic = head.readUInt16LE(0);
  const info = head.readUInt16LE(2);
  if ((magic & 0xff00) !== 0xd100 || (info & longHeaderFlag) === 0) return undefined;
  return {
    magic,
    pgMajor: majorByMagic.get(magic),
    timeline: head.readUInt32LE(4),
    pageAddress: head.readBigUInt64LE(8),
    systemIdentifier: head.readBigUInt64LE(24),
    segmentSize: head.readUInt32LE(32),
    blockSize: head.readUInt32LE(36),
  };
}
