/**
 * Prefetch for wal-fetch (DESIGN §3, local state). PostgreSQL runs restore_command once per file
 * and waits for it, so the fetching-ahead has to outlive the call: a prefetcher (a detached
 * `walship wal-prefetch` process, or `walship daemon` itself) downloads the K segments after the
 * last one PostgreSQL asked for into `pg_wal/walship/prefetch/`, and later calls hand a spooled
 * file over with one rename.
 *
 * - One prefetcher per pg_wal: it holds a Linux abstract unix socket named after the directory
 *   (`\0walship-prefetch-<hash>`) as its lock; the kernel releases it when the process dies, so a
 *   crashed prefetcher never blocks the next one. wal-fetch talks to it over that socket: "N was
 *   asked for" (which moves the window), optionally "wait until N is ready".
 * - A spooled file appears under its WAL name only complete: downloaded and decoded (the codec
 *   verifies zstd/lz4 checksums and age tags), its page header checked against its name (address,
 *   size) and against this cluster's system identifier (global/pg_control), fsynced, then renamed
 *   into place. Temp files start with a dot and are never served.
 * - The spool is bounded: only names in the window (N+1 .. N+K of the timeline PostgreSQL is on)
 *   are kept; anything else (other timeline, behind the window) is removed on the next step.
 *   When nothing has been asked for a while, the prefetcher removes the whole spool and exits.
 * - Handing over re-checks the header (cheap) and renames the file onto %p, so a file is served
 *   once; PostgreSQL asking for a name again fetches it from storage.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { askLine, readRequests } from '../line-socket.ts';
import { dirname, join, resolve } from 'node:path';
import { log } from '../log.ts';
import { lsnOfSegment, parseWalFileName, segmentFileName, segmentNumber } from '../pg/wal-names.ts';
import { longHeaderSize, parseSegmentHeader } from '../pg/wal-page.ts';

export const spoolDirOf = (walDir: string) => join(walDir, 'walship', 'prefetch');

/** The abstract socket a pg_wal's prefetcher listens on (its lock and its mailbox). */
export function prefetcherAddress(walDir: string): string {
  return `\0walship-prefetch-${createHash('sha256').update(resolve(walDir)).digest('hex').slice(0, 24)}`;
}

const segmentRe = /^[0-9A-F]{24}$/;

/** The cluster's system identifier from global/pg_control (pg_wal's parent), if readable. */
export async function clusterSystemIdentifier(walDir: string): Promise<bigint | undefined> {
  try {
    const handle = await open(join(dirname(resolve(walDir)), 'global', 'pg_control'), 'r');
    try {
      const buf = Buffer.alloc(8);
      const { bytesRead } = await handle.read(buf, 0, 8, 0);
      return bytesRead === 8 ? buf.readBigUInt64LE(0) : undefined;
    } finally {
      await handle.close();
    }
  } catch {
    return undefined;
  }
}

/**
 * Is `path` a complete segment for `name`: full size per its own header, first page at the LSN
 * the name says, and (when known) of this database system?
 */
export async function verifySpooled(path: string, name: string, systemIdentifier: bigint | undefined): Promise<number | undefined> {
  const wal = parseWalFileName(name);
  if (!wal || wal.kind !== 'segment') return undefined;
  let handle;
  try {
    handle = await open(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const { size } = await handle.stat();
    const head = Buffer.alloc(longHeaderSize);
    await handle.read(head, 0, longHeaderSize, 0);
    const header = parseSegmentHeader(head);
    if (!header || header.segmentSize !== size) return undefined;
    if (header.pageAddress !== lsnOfSegment(segmentNumber(wal.segmentId!, size), size)) return undefined;
    if (systemIdentifier !== undefined && header.systemIdentifier !== systemIdentifier) return undefined;
    return size;
  } finally {
    await handle.close();
  }
}

/**
 * Hand a spooled segment over to PostgreSQL: verify it, then rename it onto `dest`.
 * Returns its size, or undefined if the spool does not have a good copy (a bad one is removed).
 */
export async function takeFromSpool(walDir: string, name: string, dest: string): Promise<number | undefined> {
  const path = join(spoolDirOf(walDir), name);
  const size = await verifySpooled(path, name, await clusterSystemIdentifier(walDir));
  if (size === undefined) {
    await unlink(path).catch(() => {});
    return undefined;
  }
  try {
    await rename(path, dest);
    return size;
  } catch {
    return undefined;
  }
}

/** Remove spooled files of other timelines than `name`'s (recovery moved to another timeline). */
export async function dropOtherTimelines(walDir: string, name: string): Promise<void> {
  const tli = name.slice(0, 8);
  const spool = spoolDirOf(walDir);
  const entries = await readdir(spool).catch(() => [] as string[]);
  for (const entry of entries) {
    if (segmentRe.test(entry) && entry.slice(0, 8) !== tli) await unlink(join(spool, entry)).catch(() => {});
  }
}

export type PrefetchAnswer = 'have' | 'miss';

/**
 * Tell the pg_wal's prefetcher that PostgreSQL asked for `name` (it moves its window). With
 * `waitMs`, also wait (at most that long) until the prefetcher has `name` spooled: 'have', or
 * 'miss' when it does not have it and is not fetching it. Undefined when no prefetcher runs.
 */
export async function tellPrefetcher(walDir: string, name: string, segmentSize: number | undefined, waitMs = 0): Promise<PrefetchAnswer | undefined> {
  const request = JSON.stringify({ name, segmentSize, wait: waitMs > 0 });
  const answer = await askLine(prefetcherAddress(walDir), request, { timeoutMs: 1000 + waitMs, noAnswer: waitMs <= 0 });
  if (answer === undefined) return undefined;
  // Closed without an answer: what a prefetcher told without waiting does; waited for, it failed.
  if (answer === null) return waitMs > 0 ? undefined : 'miss';
  return answer.startsWith('have') ? 'have' : 'miss';
}

export interface PrefetcherOptions {
  /** Segments to keep ahead (K). */
  depth: number;
  /** Parallel downloads. */
  concurrency: number;
  /** Exit (and empty the spool) after this long without a request or a hand-over. */
  idleMs: number;
  /** How often to look for handed-over files. */
  pollMs?: number;
  /** Download one WAL file to `dest` (temp + rename; rejects with ObjectNotFoundError when absent). */
  fetch: (name: string, dest: string) => Promise<unknown>;
  isNotFound: (err: unknown) => boolean;
  /** Called once the prefetcher stopped (idle or stop()). */
  onStop?: () => void;
}

/** The process-wide prefetcher of one pg_wal: owns the spool while it holds the lock. */
export class Prefetcher {
  readonly walDir: string;
  readonly spool: string;
  #options: PrefetcherOptions;
  #server: Server | undefined;
  #timeline = 0;
  #base = -1n;
  #segmentSize = 0;
  #systemIdentifier: bigint | undefined;
  #spooled = new Set<string>();
  #inFlight = new Map<string, Promise<boolean>>();
  #backoff = new Map<string, number>();
  #lastActivity = Date.now();
  #timer: NodeJS.Timeout | undefined;
  #stopping: Promise<void> | undefined;
  #pumping = false;

  constructor(walDir: string, options: PrefetcherOptions) {
    this.walDir = walDir;
    this.spool = spoolDirOf(walDir);
    this.#options = options;
  }

  /** Take the lock and start. False when another prefetcher already runs for this pg_wal. */
  async start(): Promise<boolean> {
    const server = createServer((socket) => this.#serve(socket));
    const listening = await new Promise<boolean>((resolvePromise, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolvePromise(false) : reject(err)));
      server.listen(prefetcherAddress(this.walDir), () => resolvePromise(true));
    });
    if (!listening) return false;
    this.#server = server;
    this.#systemIdentifier = await clusterSystemIdentifier(this.walDir);
    await mkdir(this.spool, { recursive: true, mode: 0o700 });
    // Left by a prefetcher that died: temp files go; complete files are re-verified before they count.
    for (const entry of await readdir(this.spool)) {
      const path = join(this.spool, entry);
      if (segmentRe.test(entry) && (await verifySpooled(path, entry, this.#systemIdentifier)) !== undefined) this.#spooled.add(entry);
      else await rm(path, { force: true, recursive: true });
    }
    this.#timer = setInterval(() => void this.#tick(), this.#options.pollMs ?? 100);
    return true;
  }

  /** PostgreSQL asked for `name`: the window is now the `depth` segments after it, on its timeline. */
  hint(name: string, segmentSize?: number): void {
    const wal = parseWalFileName(name);
    if (!wal || wal.kind !== 'segment') return;
    if (segmentSize && !this.#segmentSize) this.#segmentSize = segmentSize;
    if (!this.#segmentSize) return;
    this.#timeline = wal.timeline;
    this.#base = segmentNumber(wal.segmentId!, this.#segmentSize);
    this.#lastActivity = Date.now();
    this.#spooled.delete(name);
    void this.#pump();
  }

  get spooled(): number {
    return this.#spooled.size;
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  #window(): string[] {
    if (!this.#segmentSize || this.#base < 0n) return [];
    return Array.from({ length: this.#options.depth }, (_, i) => segmentFileName(this.#timeline, this.#base + BigInt(i + 1), this.#segmentSize));
  }

  async #tick(): Promise<void> {
    if (this.#stopping) return;
    // The data directory went away (cluster removed, test over): nothing left to prefetch for.
    if (!(await stat(this.walDir).catch(() => undefined))) {
      void this.stop();
      return;
    }
    // Files handed over (renamed away by wal-fetch, also from bin/walship) move the window.
    for (const name of [...this.#spooled]) {
      const there = await stat(join(this.spool, name)).then(
        () => true,
        () => false,
      );
      if (there) continue;
      this.#spooled.delete(name);
      const wal = parseWalFileName(name)!;
      const seg = segmentNumber(wal.segmentId!, this.#segmentSize);
      if (wal.timeline === this.#timeline && seg > this.#base) this.#base = seg;
      this.#lastActivity = Date.now();
    }
    if (Date.now() - this.#lastActivity > this.#options.idleMs && this.#inFlight.size === 0) {
      log.debug('prefetch idle; emptying the spool', { dir: this.spool });
      void this.stop();
      return;
    }
    await this.#pump();
  }

  async #pump(): Promise<void> {
    if (this.#pumping || this.#stopping) return;
    this.#pumping = true;
    try {
      const window = this.#window();
      const wanted = new Set(window);
      for (const name of [...this.#spooled]) {
        if (!wanted.has(name)) {
          this.#spooled.delete(name);
          await unlink(join(this.spool, name)).catch(() => {});
        }
      }
      const now = Date.now();
      for (const name of window) {
        if (this.#inFlight.size >= this.#options.concurrency) break;
        if (this.#spooled.has(name) || this.#inFlight.has(name)) continue;
        // Past a name the archive does not have yet, the later ones are not there either.
        if ((this.#backoff.get(name) ?? 0) > now) break;
        this.#inFlight.set(name, this.#download(name));
      }
    } finally {
      this.#pumping = false;
    }
  }

  async #download(name: string): Promise<boolean> {
    const hidden = join(this.spool, `.dl.${name}`);
    const final = join(this.spool, name);
    let ok = false;
    try {
      await this.#options.fetch(name, hidden);
      if ((await verifySpooled(hidden, name, this.#systemIdentifier)) === undefined) {
        throw new Error(`${name}: fetched file is not that segment of this database system`);
      }
      if (!this.#window().includes(name) || this.#stopping) return false;
      await rename(hidden, final);
      this.#spooled.add(name);
      this.#backoff.delete(name);
      ok = true;
      return true;
    } catch (err) {
      const notFound = this.#options.isNotFound(err);
      this.#backoff.set(name, Date.now() + (notFound ? 1000 : 5000));
      if (!notFound) log.warn('prefetch failed; wal-fetch will fetch it itself', { file: name, error: (err as Error)?.message });
      return false;
    } finally {
      if (!ok) await unlink(hidden).catch(() => {});
      this.#inFlight.delete(name);
      if (!this.#stopping) setImmediate(() => void this.#pump());
    }
  }

  #serve(socket: Socket): void {
    readRequests(socket, (line) => {
      let message: { name?: unknown; segmentSize?: unknown; wait?: unknown };
      try {
        message = JSON.parse(line);
      } catch {
        socket.destroy();
        return;
      }
      if (typeof message.name !== 'string' || !segmentRe.test(message.name)) {
        socket.destroy();
        return;
      }
      const name = message.name;
      const pending = this.#inFlight.get(name);
      const have = this.#spooled.has(name);
      this.hint(name, typeof message.segmentSize === 'number' ? message.segmentSize : undefined);
      if (!message.wait) return socket.end();
      if (have) {
        // hint() forgot it (it is about to be handed over); the asker renames it away.
        socket.end('have\n');
      } else if (pending) {
        pending.then(
          (ok) => socket.end(ok ? 'have\n' : 'miss\n'),
          () => socket.end('miss\n'),
        );
      } else {
        socket.end('miss\n');
      }
    });
  }

  /** Stop: no new downloads, wait for running ones, empty the spool, release the lock. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      clearInterval(this.#timer);
      await Promise.allSettled([...this.#inFlight.values()]);
      await rm(this.spool, { recursive: true, force: true }).catch(() => {});
      await new Promise<void>((r) => (this.#server ? this.#server.close(() => r()) : r()));
      this.#options.onStop?.();
    })();
    return this.#stopping;
  }
}
