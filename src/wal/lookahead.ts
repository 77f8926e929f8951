/**
 * Lookahead push (DESIGN §3, local state). When PostgreSQL asks walship to archive segment N,
 * walship also uploads the next files PostgreSQL has marked ready (`pg_wal/archive_status/*.ready`),
 * in parallel, and records each one that became durable as an empty marker file
 * `pg_wal/walship/archived/<name>`. PostgreSQL's later call for a marked name finds the marker,
 * removes it and exits 0 at once (in `bin/walship` itself, before Node starts).
 *
 * Safety argument:
 * - a marker is created only after `pushWalFile` resolved, i.e. after the object (or an
 *   identical one already there) is durable in the repository; a crash before that leaves no
 *   marker, and PostgreSQL's own call pushes the file again (idempotent: same bytes → exit 0);
 * - a marker is trusted only if it is at least as new as the WAL file it vouches for (a WAL
 *   file with that name written after the marker is never declared archived by it);
 * - removing a marker is always safe: the worst outcome is one more upload that finds an
 *   identical object; so stale markers are swept freely.
 * Only this module creates markers; nothing but empty files named like WAL files lives there.
 */
import { mkdir, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { log } from '../log.ts';
import { parseWalFileName } from '../pg/wal-names.ts';
import { forEachConcurrently } from '../pool.ts';

export const localStateDir = 'walship';
export const markerDirName = 'archived';

/** `pg_wal` when `walPath` is a file directly in a directory named pg_wal (as PostgreSQL's %p is), else undefined. */
export function walDirOf(walPath: string): string | undefined {
  const dir = dirname(walPath);
  return basename(dir) === 'pg_wal' ? dir : undefined;
}

export const markerDir = (walDir: string) => join(walDir, localStateDir, markerDirName);

/**
 * PostgreSQL asks to archive `walPath`: if a marker says it is already durable, remove the marker
 * (PostgreSQL has now asked for that name) and return true.
 */
export async function consumeMarker(walPath: string, tag: string): Promise<boolean> {
  const walDir = walDirOf(walPath);
  const name = basename(walPath);
  if (!walDir || !parseWalFileName(name)) return false;
  const marker = join(markerDir(walDir), name);
  const [markerInfo, fileInfo] = await Promise.all([stat(marker).catch(() => undefined), stat(walPath).catch(() => undefined)]);
  if (!markerInfo) return false;
  // A marker vouches only for the destination that wrote it (archive_command may run walship
  // twice, into two repositories); another destination's marker is left for its own call.
  if ((await readFile(marker, 'utf8').catch(() => '')) !== `${tag}\n`) return false;
  await unlink(marker).catch(() => {});
  if (!fileInfo || markerInfo.mtimeMs < fileInfo.mtimeMs) {
    log.warn('ignoring an archive marker older than its WAL file; archiving it again', { file: name });
    return false;
  }
  log.debug('already archived by lookahead', { file: name });
  return true;
}

/** Record that `name` is durable in the repository `tag` names. Called only after its push resolved. */
export async function writeMarker(walDir: string, name: string, tag: string): Promise<void> {
  const dir = markerDir(walDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // Written beside the marker directory and renamed in, so a kill never leaves a torn marker
  // (one that names no destination would never be consumed).
  const temp = join(dir, '..', `.marker.${name}.${process.pid}`);
  await writeFile(temp, `${tag}\n`, { mode: 0o600 });
  await rename(temp, join(dir, name));
}

/**
 * Which destination an archive_command invocation archives to, as both bin/walship (in sh) and
 * Node can tell it before loading settings: the --config argument as given, WALSHIP_CONFIG and
 * WALSHIP_STORAGE. Two walship calls in one archive_command differ in at least one of them.
 */
export function destinationTag(configArg: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return `${configArg ?? ''}|${env.WALSHIP_CONFIG ?? ''}|${env.WALSHIP_STORAGE ?? ''}`;
}

/** The names PostgreSQL has marked ready for archiving, in the order its archiver takes them (history files first). */
export async function readyFiles(walDir: string): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(join(walDir, 'archive_status'));
  } catch {
    return [];
  }
  const names = entries.filter((e) => e.endsWith('.ready')).map((e) => e.slice(0, -'.ready'.length)).filter((n) => parseWalFileName(n));
  const history = (n: string) => (n.endsWith('.history') ? 0 : 1);
  return names.sort((a, b) => history(a) - history(b) || (a < b ? -1 : a > b ? 1 : 0));
}

/** Markers present now (names). */
export async function markers(walDir: string): Promise<Set<string>> {
  try {
    return new Set((await readdir(markerDir(walDir))).filter((n) => !n.startsWith('.')));
  } catch {
    return new Set();
  }
}

/**
 * Remove markers PostgreSQL will never ask about: their `.ready` file is gone (the name was
 * archived meanwhile, e.g. by a call that raced the lookahead, or the marker is stale).
 */
export async function sweepMarkers(walDir: string, ready: readonly string[], present: Set<string>): Promise<void> {
  const wanted = new Set(ready);
  for (const name of present) {
    if (wanted.has(name)) continue;
    if (await stat(join(walDir, 'archive_status', `${name}.ready`)).catch(() => undefined)) continue;
    await unlink(join(markerDir(walDir), name)).catch(() => {});
  }
}

export interface LookaheadOptions {
  /** Most other ready files to push along with the requested one (0 = lookahead off). */
  lookahead: number;
  /** Parallel uploads. */
  concurrency: number;
  /** The destination markers are written for (destinationTag). */
  tag: string;
}

export interface BatchResult {
  /** Other files made durable and marked. */
  marked: string[];
  /** Other files that failed (left for PostgreSQL to ask again). */
  failed: string[];
}

/**
 * Push `walPath` (the file PostgreSQL asked for) and up to `lookahead` other ready files, with at
 * most `concurrency` uploads at once. Resolves when every upload of the batch has ended; rejects
 * with the requested file's failure, if any (the others' failures only cost a later retry).
 */
export async function pushWithLookahead(
  walPath: string,
  push: (path: string) => Promise<unknown>,
  options: LookaheadOptions,
): Promise<BatchResult> {
  const walDir = walDirOf(walPath);
  const requested = basename(walPath);
  const result: BatchResult = { marked: [], failed: [] };
  let others: string[] = [];
  if (walDir && options.lookahead > 0) {
    const [ready, present] = await Promise.all([readyFiles(walDir), markers(walDir)]);
    others = ready.filter((n) => n !== requested && !present.has(n)).slice(0, options.lookahead);
    if (present.size) await sweepMarkers(walDir, ready, present);
  }
  let requestedError: unknown;
  const jobs: (() => Promise<void>)[] = [
    async () => {
      try {
        await push(walPath);
      } catch (err) {
        requestedError = err ?? new Error('push failed');
      }
    },
    ...others.map((name) => async () => {
      // The requested file failing means something is wrong (storage, config): stop early.
      if (requestedError !== undefined) return;
      try {
        await push(join(walDir!, name));
        await writeMarker(walDir!, name, options.tag);
        result.marked.push(name);
      } catch (err) {
        result.failed.push(name);
        log.debug('lookahead push failed; PostgreSQL will ask for it again', { file: name, error: (err as Error)?.message });
      }
    }),
  ];
  await forEachConcurrently(jobs, options.concurrency, (job) => job());
  if (requestedError !== undefined) throw requestedError;
  if (result.marked.length) log.debug('lookahead archived', { files: result.marked.length });
  return result;
}

