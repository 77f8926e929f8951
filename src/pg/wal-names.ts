/**
 * WAL file names and LSN arithmetic (no I/O). A segment name is TTTTTTTTXXXXXXXXYYYYYYYY:
 * timeline, then the segment number split into "log" and "segment within log", where a log
 * holds 4 GiB / wal_segment_size segments (so the split depends on the segment size).
 */
export type WalFileKind = 'segment' | 'partial' | 'backup' | 'history';

export interface WalFileName {
  name: string;
  kind: WalFileKind;
  timeline: number;
  /** The 16 hex digits after the timeline (segment files, .partial, .backup); undefined for .history. */
  segmentId?: string;
}

const segmentRe = /^([0-9A-F]{8})([0-9A-F]{16})$/;
const partialRe = /^([0-9A-F]{8})([0-9A-F]{16})\.partial$/;
const backupRe = /^([0-9A-F]{8})([0-9A-F]{16})\.[0-9A-F]{8}\.backup$/;
const historyRe = /^([0-9A-F]{8})\.history$/;

/** Parse a WAL file name as PostgreSQL passes it in %f; undefined if it is not one. */
export function parseWalFileName(name: string): WalFileName | undefined {
  let m = segmentRe.exec(name);
  if (m) return { name, kind: 'segment', timeline: parseInt(m[1]!, 16), segmentId: m[2]! };
  m = partialRe.exec(name);
  if (m) return { name, kind: 'partial', timeline: parseInt(m[1]!, 16), segmentId: m[2]! };
  m = backupRe.exec(name);
  if (m) return { name, kind: 'backup', timeline: parseInt(m[1]!, 16), segmentId: m[2]! };
  m = historyRe.exec(name);
  if (m) return { name, kind: 'history', timeline: parseInt(m[1]!, 16) };
  return undefined;
}

export const isValidSegmentSize = (size: number) => size >= 1 << 20 && size <= 1 << 30 && (size & (size - 1)) === 0;

const segmentsPerLog = (segmentSize: number) => 0x1_0000_0000 / segmentSize;
const hex8 = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');

/** The segment number (0-based, across logs) of a segment file name's last 16 digits. */
export function segmentNumber(segmentId: string, segmentSize: number): bigint {
  const log = BigInt(parseInt(segmentId.slice(0, 8), 16));
  const seg = BigInt(parseInt(segmentId.slice(8), 16));
  return log * BigInt(segmentsPerLog(segmentSize)) + seg;
}

export function segmentFileName(timeline: number, segNo: bigint, segmentSize: number): string {
  const perLog = BigInt(segmentsPerLog(segmentSize));
  return hex8(timeline) + hex8(Number(segNo / perLog)) + hex8(Number(segNo % perLog));
}

/** Parse an LSN written as X/Y (hex). */
export function parseLsn(text: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!m) throw new Error(`not an LSN: '${text}' (expected hex X/Y such as 0/16B3748)`);
  return (BigInt(parseInt(m[1]!, 16)) << 32n) | BigInt(parseInt(m[2]!, 16));
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** The segment holding byte `lsn`. */
export const segmentOfLsn = (lsn: bigint, segmentSize: number): bigint => lsn / BigInt(segmentSize);

/** The first LSN of segment `segNo`. */
export const lsnOfSegment = (segNo: bigint, segmentSize: number): bigint => segNo * BigInt(segmentSize);
