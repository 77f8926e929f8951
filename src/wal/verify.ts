/**
 * wal-verify: can the archived WAL do what the backups promise?
 *
 * Continuity: every segment from the WAL floor (the start of the oldest kept non-permanent backup,
 * the same rule `delete` keeps WAL by: src/retention/plan.ts walRequirements) to the newest
 * archived segment of the current timeline's lineage, each read from the timeline PostgreSQL
 * would read it from (following the .history files across promotions); and, for every backup,
 * its own start..stop segments. Every missing segment is reported, grouped into runs.
 *
 * Integrity: every required segment (and every .history file) decodes (codec checksums,
 * decryption), is exactly wal_segment_size long, starts with a WAL long page header whose magic
 * is PostgreSQL's, whose page address is the one its name implies, and whose system identifier is
 * the repository's; with `waldump`, pg_waldump also decodes every record (CRC checks) of the
 * segments written by its own major.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeObject, type Encryption } from '../codec/codec.ts';
import { oneLine } from '../errors.ts';
import { lsnOfSegment, formatLsn, parseLsn, segmentFileName, segmentNumber } from '../pg/wal-names.ts';
import { longHeaderSize, parseSegmentHeader, walMagicByMajor } from '../pg/wal-page.ts';
import type { TimelineHistoryEntry } from '../pg/timeline-history.ts';
import { keys } from '../repository.ts';
import type { Storage } from '../storage/storage.ts';
import { walRequirements, segmentOfLsn, type BackupDescriptor, type WalFloor } from '../retention/plan.ts';
import { compareBig, currentTimeline, lineageRanges, timelineForSegment, historyFileName, type WalInventory } from './inventory.ts';
import { forEachConcurrently } from '../pool.ts';

export interface VerifyOptions {
  /** Decode every required object (default true); false checks continuity only. */
  decode?: boolean;
  /** Also check every archived WAL object, not only the required ones. */
  all?: boolean;
  /** pg_waldump executables by PostgreSQL major, for full record decoding. */
  waldump?: ReadonlyMap<number, string> | undefined;
  concurrency?: number;
  /** walship.json's system identifier, to check segment headers against. */
  systemIdentifier?: string | undefined;
  /** Progress callback (segments checked so far). */
  onProgress?: ((done: number, total: number) => void) | undefined;
}

export interface VerifyGap {
  timeline: number;
  first: string;
  last: string;
  count: number;
  /** What needs it: 'recovery window' or a backup name. */
  neededBy: string;
}

export interface VerifyCorruption {
  name: string;
  reason: string;
}

export interface VerifyReport {
  segmentSize: number;
  timeline: number;
  floor: WalFloor | undefined;
  /** First and last segment of the continuity check along the current lineage. */
  from: string | undefined;
  to: string | undefined;
  requiredSegments: number;
  checkedObjects: number;
  checkedBytes: number;
  gaps: VerifyGap[];
  corrupt: VerifyCorruption[];
  /** Other problems (missing .history, unreadable history). */
  problems: string[];
  /** Facts worth knowing that are not failures. */
  notes: string[];
  backups: { name: string; timeline: number; first: string; last: string; restorable: boolean }[];
  waldump: { segments: number; skipped: number; tool?: string | undefined };
  ok: boolean;
}

/** Exit codes of wal-verify: 0 ok, 3 WAL missing (gap, missing .history), 4 a corrupt object (wins over 3). */
export function verifyExitCode(report: VerifyReport): number {
  if (report.corrupt.length) return 4;
  if (report.gaps.length || report.problems.length) return 3;
  return 0;
}

interface Needed {
  timeline: number;
  segNo: bigint;
  neededBy: string;
}

export async function verifyArchive(
  storage: Storage,
  encryption: Encryption | undefined,
  input: { inventory: WalInventory; histories: ReadonlyMap<number, TimelineHistoryEntry[]>; backups: readonly BackupDescriptor[] },
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const { inventory, histories, backups } = input;
  const segmentSize = inventory.segmentSize;
  const archived = new Map<number, Set<bigint>>();
  for (const t of inventory.timelines) archived.set(t.timeline, new Set(t.segments));
  const has = (timeline: number, segNo: bigint) => archived.get(timeline)?.has(segNo) ?? false;
  const timeline = currentTimeline(inventory);
  const problems: string[] = [];
  const notes: string[] = [];

  const historyOf = (tl: number): TimelineHistoryEntry[] => {
    if (tl > 1 && !histories.has(tl)) {
      const problem = `${historyFileName(tl)} is not archived: recovery cannot follow timeline ${tl} back to its parent`;
      if (!problems.includes(problem)) problems.push(problem);
    }
    return histories.get(tl) ?? [];
  };

  // Required segments, keyed "timeline/segNo" so each is checked once.
  const needed = new Map<string, Needed>();
  const need = (n: Needed) => {
    const key = `${n.timeline}/${n.segNo}`;
    if (!needed.has(key)) needed.set(key, n);
  };

  // 1. The recovery window along the current timeline's lineage.
  const { floor } = walRequirements(backups, { segmentSize, floorFrom: 'regular' });
  const lineage = lineageRanges(timeline, historyOf(timeline), segmentSize);
  let to: bigint | undefined;
  let lowest: bigint | undefined;
  for (const r of lineage) {
    for (const s of archived.get(r.timeline) ?? []) {
      if (s < r.from || (r.to !== undefined && s > r.to)) continue;
      if (to === undefined || s > to) to = s;
      if (lowest === undefined || s < lowest) lowest = s;
    }
  }
  const from = floor?.segNo ?? lowest;
  if (!floor) notes.push('no complete backup: checking the WAL of the current timeline from its oldest archived segment');
  if (from !== undefined && to !== undefined) {
    for (let s = from; s <= to; s++) {
      const tl = timelineForSegment(lineage, s);
      if (tl !== undefined) need({ timeline: tl, segNo: s, neededBy: 'recovery window' });
    }
  }

  // 2. Each backup's own start..stop segments along its timeline's lineage.
  const backupReports: VerifyReport['backups'] = [];
  for (const b of backups) {
    const ranges = lineageRanges(b.timeline, historyOf(b.timeline), segmentSize);
    const start = segmentOfLsn(b.startLsn, segmentSize);
    const stop = segmentOfLsn(b.stopLsn, segmentSize);
    let restorable = true;
    for (let s = start; s <= stop; s++) {
      const tl = timelineForSegment(ranges, s) ?? b.timeline;
      need({ timeline: tl, segNo: s, neededBy: b.name });
      if (!has(tl, s)) restorable = false;
    }
    backupReports.push({ name: b.name, timeline: b.timeline, first: segmentFileName(b.timeline, start, segmentSize), last: segmentFileName(b.timeline, stop, segmentSize), restorable });
  }
  if (floor) {
    const { pinned } = walRequirements(backups, { segmentSize, floorFrom: 'regular' });
    const below = inventory.timelines.reduce((n, t) => n + t.segments.filter((s) => s < floor.segNo && !pinned.some((p) => s >= p.from && s <= p.to)).length, 0);
    if (below) notes.push(`${below} archived segments older than ${floor.name} (${floor.reason}) are needed by no backup; 'delete retain' or 'delete before' removes them`);
  }

  // Gaps: missing required segments, grouped in runs per timeline and purpose.
  const missing = [...needed.values()].filter((n) => !has(n.timeline, n.segNo)).sort((a, b) => a.timeline - b.timeline || compareBig(a.segNo, b.segNo));
  const gaps: VerifyGap[] = [];
  let run: { timeline: number; from: bigint; to: bigint; neededBy: string } | undefined;
  const flush = () => {
    if (run) gaps.push({ timeline: run.timeline, first: segmentFileName(run.timeline, run.from, segmentSize), last: segmentFileName(run.timeline, run.to, segmentSize), count: Number(run.to - run.from + 1n), neededBy: run.neededBy });
  };
  for (const m of missing) {
    if (run && run.timeline === m.timeline && m.segNo === run.to + 1n) run.to = m.segNo;
    else {
      flush();
      run = { timeline: m.timeline, from: m.segNo, to: m.segNo, neededBy: m.neededBy };
    }
  }
  flush();

  // Integrity.
  const corrupt: VerifyCorruption[] = [];
  let checkedObjects = 0;
  let checkedBytes = 0;
  const waldumpReport: VerifyReport['waldump'] = { segments: 0, skipped: 0 };
  if (options.decode !== false) {
    const present = [...needed.values()].filter((n) => has(n.timeline, n.segNo)).map((n) => segmentFileName(n.timeline, n.segNo, segmentSize));
    const targets = new Set(present);
    if (options.all) for (const f of inventory.files) if (f.kind !== 'history') targets.add(f.name);
    const list = [...targets].sort();
    const sysid = options.systemIdentifier;
    const majors = new Map<string, number>();
    let done = 0;
    await forEachConcurrently(list, options.concurrency ?? 2, async (name) => {
      const result = await checkObject(storage, encryption, name, segmentSize, sysid);
      checkedObjects++;
      checkedBytes += result.bytes;
      if (result.problem) corrupt.push({ name, reason: result.problem });
      else if (result.pgMajor !== undefined) majors.set(name, result.pgMajor);
      options.onProgress?.(++done, list.length);
    });
    // .history files were decoded and parsed when read; any failure there stopped before verification.
    checkedObjects += inventory.histories.length;
    if (options.waldump?.size) {
      const bad = new Set(corrupt.map((c) => c.name));
      const runs = segmentRuns(present.filter((n) => !bad.has(n)), segmentSize);
      for (const r of runs) {
        const major = majors.get(r.names[0]!);
        const tool = major !== undefined ? options.waldump.get(major) : undefined;
        if (!tool) {
          waldumpReport.skipped += r.names.length;
          continue;
        }
        waldumpReport.tool = tool;
        const found = await waldumpRun(storage, encryption, tool, r.timeline, r.names, segmentSize);
        waldumpReport.segments += r.names.length;
        for (const c of found) if (!corrupt.some((x) => x.name === c.name)) corrupt.push(c);
      }
      if (waldumpReport.skipped) notes.push(`pg_waldump skipped ${waldumpReport.skipped} segments written by a PostgreSQL major it cannot read`);
    }
  }
  corrupt.sort((a, b) => (a.name < b.name ? -1 : 1));

  return {
    segmentSize,
    timeline,
    floor,
    from: from !== undefined ? segmentFileName(timelineForSegment(lineage, from) ?? timeline, from, segmentSize) : undefined,
    to: to !== undefined ? segmentFileName(timelineForSegment(lineage, to) ?? timeline, to, segmentSize) : undefined,
    requiredSegments: needed.size,
    checkedObjects,
    checkedBytes,
    gaps,
    corrupt,
    problems,
    notes,
    backups: backupReports,
    waldump: waldumpReport,
    ok: gaps.length === 0 && corrupt.length === 0 && problems.length === 0,
  };
}

/** Decode one archived segment and check its first page against its name. */
async function checkObject(
  storage: Storage,
  encryption: Encryption | undefined,
  name: string,
  segmentSize: number,
  systemIdentifier: string | undefined,
): Promise<{ bytes: number; problem?: string; pgMajor?: number | undefined }> {
  const key = keys.wal(name);
  let size = 0;
  const head: Buffer[] = [];
  let headSize = 0;
  try {
    for await (const chunk of decodeObject(await storage.get(key), encryption, `${storage.location}/${key}`)) {
      const b = chunk as Buffer;
      if (headSize < longHeaderSize) {
        head.push(b);
        headSize += b.length;
      }
      size += b.length;
    }
  } catch (err) {
    return { bytes: size, problem: oneLine(err).replace(`${storage.location}/${key}: `, '') };
  }
  const isSegment = /^[0-9A-F]{24}$/.test(name);
  const isPartial = name.endsWith('.partial');
  if (!isSegment && !isPartial) return { bytes: size };
  if (isSegment && size !== segmentSize) return { bytes: size, problem: `decodes to ${size} bytes, not wal_segment_size ${segmentSize}` };
  const header = parseSegmentHeader(Buffer.concat(head, headSize));
  if (!header) return { bytes: size, problem: 'no WAL long page header at the start (wrong magic or flags)' };
  if (header.pgMajor === undefined) return { bytes: size, problem: `unknown WAL page magic 0x${header.magic.toString(16)} (not PostgreSQL ${Object.keys(walMagicByMajor).join('/')})` };
  if (header.segmentSize !== segmentSize) return { bytes: size, problem: `header says wal_segment_size ${header.segmentSize}, the archive uses ${segmentSize}` };
  const expected = lsnOfSegment(segmentNumber(name.slice(8, 24), segmentSize), segmentSize);
  if (header.pageAddress !== expected) return { bytes: size, problem: `holds the segment for LSN ${formatLsn(header.pageAddress)}, not ${formatLsn(expected)} as its name says` };
  const timeline = parseInt(name.slice(0, 8), 16);
  if (header.timeline > timeline) return { bytes: size, problem: `first page belongs to timeline ${header.timeline}, above the ${timeline} of its name` };
  if (systemIdentifier !== undefined && header.systemIdentifier.toString() !== systemIdentifier) {
    return { bytes: size, problem: `written by database system ${header.systemIdentifier}, not ${systemIdentifier} (walship.json)` };
  }
  return { bytes: size, pgMajor: header.pgMajor };
}

/** Consecutive segments on one timeline, in batches pg_waldump decodes together. */
function segmentRuns(names: readonly string[], segmentSize: number, batch = 32): { timeline: number; names: string[] }[] {
  const sorted = [...names].sort();
  const runs: { timeline: number; names: string[]; last: bigint }[] = [];
  for (const name of sorted) {
    const timeline = parseInt(name.slice(0, 8), 16);
    const segNo = segmentNumber(name.slice(8), segmentSize);
    const current = runs.at(-1);
    if (current && current.timeline === timeline && current.last + 1n === segNo && current.names.length < batch) {
      current.names.push(name);
      current.last = segNo;
    } else {
      // A new batch of a continuing run starts with the previous batch's last segment, so records crossing the cut are decoded.
      const overlap = current && current.timeline === timeline && current.last + 1n === segNo ? [current.names.at(-1)!] : [];
      runs.push({ timeline, names: [...overlap, name], last: segNo });
    }
  }
  return runs;
}

/**
 * Decode a run of segments into a temporary directory and let pg_waldump read every record.
 * The end of the run is not an error: the last record may continue into the next segment, which
 * is not in the directory ("could not find file" for a later segment).
 */
async function waldumpRun(
  storage: Storage,
  encryption: Encryption | undefined,
  tool: string,
  timeline: number,
  names: readonly string[],
  segmentSize: number,
): Promise<VerifyCorruption[]> {
  const dir = await mkdtemp(join(tmpdir(), 'walship-verify-'));
  try {
    for (const name of names) {
      const key = keys.wal(name);
      const out = await open(join(dir, name), 'wx', 0o600);
      try {
        for await (const chunk of decodeObject(await storage.get(key), encryption, `${storage.location}/${key}`)) await out.write(chunk as Buffer);
      } finally {
        await out.close();
      }
    }
    const { code, stderr } = await run(tool, ['-q', '-p', dir, '-t', String(timeline), names[0]!, names.at(-1)!]);
    if (code === 0) return [];
    const missingFile = /could not find file "([0-9A-F]{24})"/.exec(stderr);
    if (missingFile && missingFile[1]! > names.at(-1)!) return [];
    const lsnText = /at ([0-9A-F]+\/[0-9A-F]+)/i.exec(stderr)?.[1];
    const last = segmentNumber(names.at(-1)!.slice(8), segmentSize);
    if (lsnText) {
      const lsn = parseLsn(lsnText);
      const segNo = lsn / BigInt(segmentSize);
      // An error in the last segment of a batch may be a record continuing past it: the next batch starts there again.
      if (segNo >= last && /invalid record length|could not find|contrecord|invalid magic number 0000/i.test(stderr)) return [];
      return [{ name: segmentFileName(timeline, segNo, segmentSize), reason: `pg_waldump: ${oneLine(stderr).replace(/^pg_waldump: (error: )?/, '')}` }];
    }
    return [{ name: names[0]!, reason: `pg_waldump failed on ${names[0]}..${names.at(-1)}: ${oneLine(stderr)}` }];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function run(file: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => resolve({ code: 127, stderr: err.message }));
    child.on('close', (code) => resolve({ code: code ?? 1, stderr }));
  });
}

/** pg_waldump executables on this machine, by the PostgreSQL major whose WAL they read. */
export async function findWaldump(explicit?: string | undefined): Promise<Map<number, string>> {
  const found = new Map<number, string>();
  const candidates: string[] = [];
  if (explicit) candidates.push(explicit);
  else {
    const { readdir } = await import('node:fs/promises');
    const dirs = await readdir('/usr/lib/postgresql').catch(() => [] as string[]);
    for (const d of dirs) candidates.push(`/usr/lib/postgresql/${d}/bin/pg_waldump`);
    for (const p of (process.env.PATH ?? '').split(':')) if (p) candidates.push(join(p, 'pg_waldump'));
  }
  for (const c of candidates) {
    const version = await new Promise<string>((resolve) => {
      const child = spawn(c, ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.on('error', () => resolve(''));
      child.on('close', () => resolve(out));
    });
    const major = /\(PostgreSQL\) (\d+)/.exec(version)?.[1];
    if (major && !found.has(Number(major))) found.set(Number(major), c);
  }
  return found;
}
