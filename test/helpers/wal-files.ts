/**
 * Synthetic but valid WAL files for tests: a segment starts with the 40-byte long page header
 * that src/pg/wal-page.ts parses (magic, XLP_LONG_HEADER, timeline, page address, system
 * identifier, segment size, block size), followed by a payload that is deterministic for a seed
 * and compresses about 4:1 (2 KiB of keystream + 6 KiB of zeros per 8 KiB page), so codecs
 * have real work and any reordering or loss of bytes shows.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lsnOfSegment, segmentFileName } from '../../src/pg/wal-names.ts';
import { longHeaderSize, walMagicByMajor } from '../../src/pg/wal-page.ts';

export const MiB = 1024 * 1024;
export const defaultSystemIdentifier = 7300000000000000001n;

export interface SegmentOptions {
  /** wal_segment_size: a power of two from 1 MiB to 1 GiB (default 16 MiB). */
  segmentSize?: number;
  timeline?: number;
  /** Segment number across logs (default 1). */
  segNo?: bigint;
  systemIdentifier?: bigint;
  pgMajor?: number;
  /** Payload seed: the same seed gives the same bytes. */
  seed?: string;
  /** Write a page address different from the one the name implies (a misnamed segment). */
  pageAddress?: bigint;
}

/** The 40-byte XLogLongPageHeaderData of a segment's first page. */
export function longPageHeader(options: Required<Omit<SegmentOptions, 'seed' | 'pageAddress'>> & { pageAddress: bigint }): Buffer {
  const head = Buffer.alloc(longHeaderSize);
  head.writeUInt16LE(walMagicByMajor[options.pgMajor]!, 0);
  head.writeUInt16LE(0x0002, 2); // XLP_LONG_HEADER
  head.writeUInt32LE(options.timeline, 4);
  head.writeBigUInt64LE(options.pageAddress, 8);
  head.writeUInt32LE(0, 16); // xlp_rem_len
  head.writeBigUInt64LE(options.systemIdentifier, 24);
  head.writeUInt32LE(options.segmentSize, 32);
  head.writeUInt32LE(8192, 36); // XLOG_BLCKSZ
  return head;
}

/** Deterministic bytes for a seed: AES-CTR keystream, fast enough for 64 MiB and more. */
export function keystream(seed: string, length: number): Buffer {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()]);
}

/** Text-like payload: per 8 KiB page, 2 KiB of keystream then zeros. */
function payload(seed: string, length: number): Buffer {
  const out = Buffer.alloc(length);
  const random = keystream(seed, Math.ceil(length / 4));
  for (let page = 0, r = 0; page < length; page += 8192, r += 2048) {
    random.copy(out, page, r, Math.min(r + 2048, random.length));
  }
  return out;
}

export interface WalSegment {
  name: string;
  bytes: Buffer;
}

/** A whole segment file: its name (from timeline and segment number) and its bytes. */
export function makeSegment(options: SegmentOptions = {}): WalSegment {
  const segmentSize = options.segmentSize ?? 16 * MiB;
  const timeline = options.timeline ?? 1;
  const segNo = options.segNo ?? 1n;
  const bytes = payload(options.seed ?? `seg-${timeline}-${segNo}-${segmentSize}`, segmentSize);
  longPageHeader({
    segmentSize,
    timeline,
    segNo,
    systemIdentifier: options.systemIdentifier ?? defaultSystemIdentifier,
    pgMajor: options.pgMajor ?? 17,
    pageAddress: options.pageAddress ?? lsnOfSegment(segNo, segmentSize),
  }).copy(bytes, 0);
  return { name: segmentFileName(timeline, segNo, segmentSize), bytes };
}

/** A timeline history file as PostgreSQL writes it. */
export function makeHistory(timeline: number): WalSegment {
  const lines = [];
  for (let tli = 1; tli < timeline; tli++) lines.push(`${tli}\t0/${(0x3000000 * tli).toString(16).toUpperCase()}\tno recovery target specified\n`);
  return { name: `${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`, bytes: Buffer.from(lines.join('\n')) };
}

/** A backup history file (<segment>.<offset>.backup). */
export function makeBackupHistory(segmentName: string, offset = 0x28): WalSegment {
  const off = offset.toString(16).toUpperCase().padStart(8, '0');
  const text = `START WAL LOCATION: 0/${off} (file ${segmentName})\nSTOP WAL LOCATION: 0/${(offset + 0x100).toString(16).toUpperCase()} (file ${segmentName})\nCHECKPOINT LOCATION: 0/${off}\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-27 14:00:00 UTC\nLABEL: test\nSTART TIMELINE: 1\nSTOP TIME: 2026-11-27 14:00:01 UTC\nSTOP TIMELINE: 1\n`;
  return { name: `${segmentName}.${off}.backup`, bytes: Buffer.from(text) };
}

/** A temp directory readable by every user (so the postgres OS user can work in it); removed by `remove()`. */
export function tempDir(label: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), `walship-${label}-`));
  chmodSync(path, 0o755);
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Write a WAL file into `dir` under its name; returns its path. */
export function writeWalFile(dir: string, file: WalSegment, mode = 0o644): string {
  const path = join(dir, file.name);
  writeFileSync(path, file.bytes, { mode });
  chmodSync(path, mode);
  return path;
}
