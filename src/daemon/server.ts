/**
 * `walship daemon`: one long-lived process per cluster that keeps the storage client, codec
 * addons and key material loaded, and
 * - answers wal-push / wal-fetch requests from the thin client on a unix socket (mode 0600);
 * - with a data directory (PGDATA), archives every WAL file PostgreSQL marks ready as soon as it
 *   appears (the lookahead of wal-push, continuously), recording each durable one with a marker so
 *   that PostgreSQL's call for it returns at once (DESIGN §3);
 * - runs the prefetcher for wal-fetch in-process;
 * - serves Prometheus /metrics on a local address.
 * SIGTERM/SIGINT: stop taking requests, finish the uploads in flight, exit 0.
 */
import { chmod, stat, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { basename, join, resolve } from 'node:path';
import type { Server as HttpServer } from 'node:http';
import { ExitCode, oneLine, WalshipError } from '../errors.ts';
import { log } from '../log.ts';
import { version } from '../version.ts';
import { readRequests } from '../line-socket.ts';
import { isNotFound } from '../storage/storage.ts';
import { consumeMarker, markers, readyFiles, sweepMarkers, writeMarker } from '../wal/lookahead.ts';
import { pushWalFile, type WalPushContext } from '../wal/push.ts';
import { fetchForRecovery, fetchWalFile, type WalFetchContext } from '../wal/fetch.ts';
import { Prefetcher } from '../wal/prefetch.ts';
import { createMetrics, serveMetrics, type Metrics } from './metrics.ts';
import type { Answer, DaemonStatus, Request } from './protocol.ts';

export interface DaemonOptions {
  socketPath: string;
  /** host:port for /metrics, or undefined for none. */
  metricsAddress?: string | undefined;
  fingerprint: string;
  /** The daemon's own destinationTag (its --config, WALSHIP_CONFIG, WALSHIP_STORAGE): the tag of its
   * markers until a client's push request tells the archive_command's own. */
  markerTag: string;
  push: WalPushContext;
  fetch: WalFetchContext;
  /** Data directory whose pg_wal is archived continuously (optional). */
  pgdata?: string | undefined;
  uploadConcurrency: number;
  downloadConcurrency: number;
  prefetch: number;
  /** How often to look for new .ready files (ms). */
  scanIntervalMs?: number;
}

export interface RunningDaemon {
  status(): DaemonStatus;
  /** Stop taking requests, finish in-flight uploads, release everything. */
  shutdown(): Promise<void>;
  readonly closed: Promise<void>;
}

export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  const metrics: Metrics = await createMetrics();
  const startedAt = new Date();
  const counters = { pushed: 0, pushedBytes: 0, fetched: 0, fetchedBytes: 0, failures: 0 };
  let lastPushAt: Date | undefined;
  let lastFetchAt: Date | undefined;
  const walDir = options.pgdata ? join(resolve(options.pgdata), 'pg_wal') : undefined;

  /** Uploads running, by WAL name: a request for a name already being pushed waits for that push. */
  const pushing = new Map<string, Promise<void>>();
  /**
   * Names made durable recently (on request or ahead): between PostgreSQL's call and its rename of
   * .ready to .done, the .ready file is still there; do not push those again.
   */
  const recentlyDone = new Map<string, number>();
  /** The destination tag of the archive_command that hands pushes over (see destinationTag). */
  let clientTag: string = options.markerTag;
  const prefetchers = new Map<string, Prefetcher>();
  let closing = false;
  let queued = 0;

  const pushOne = (path: string, via: 'request' | 'lookahead'): Promise<void> => {
    const name = basename(path);
    const running = pushing.get(name);
    if (running) return running;
    const job = (async () => {
      const timer = metrics.pushSeconds.startTimer();
      metrics.inFlight.inc();
      try {
        const { size } = await stat(path);
        await pushWalFile(path, options.push);
        recentlyDone.set(name, Date.now());
        // Markers answer PostgreSQL's later call in bin/walship's sh fast path, which compares the
        // marker with its own destination tag (the daemon's, or the one its clients sent).
        if (via === 'lookahead') await writeMarker(join(path, '..'), name, clientTag);
        counters.pushed++;
        counters.pushedBytes += size;
        lastPushAt = new Date();
        metrics.pushed.inc({ via });
        metrics.pushedBytes.inc(size);
        metrics.lastSuccess.set({ op: 'push' }, lastPushAt.getTime() / 1000);
        timer();
      } catch (err) {
        counters.failures++;
        metrics.failures.inc({ op: 'push' });
        throw err;
      } finally {
        metrics.inFlight.dec();
        pushing.delete(name);
      }
    })();
    pushing.set(name, job);
    job.catch(() => {});
    return job;
  };

  // Continuous lookahead: archive .ready files as soon as PostgreSQL marks them.
  let scanning = false;
  let scanTimer: NodeJS.Timeout | undefined;
  const failedAt = new Map<string, number>();
  const scan = async () => {
    if (!walDir || scanning || closing) return;
    scanning = true;
    try {
      const [ready, present] = await Promise.all([readyFiles(walDir), markers(walDir)]);
      if (present.size) await sweepMarkers(walDir, ready, present);
      const now = Date.now();
      for (const [name, at] of recentlyDone) if (now - at > 120_000) recentlyDone.delete(name);
      const todo = ready.filter(
        (n) => !present.has(n) && !pushing.has(n) && !recentlyDone.has(n) && now - (failedAt.get(n) ?? 0) > 5000,
      );
      metrics.queueDepth.set(ready.filter((n) => !present.has(n)).length);
      queued = todo.length;
      const free = options.uploadConcurrency - [...pushing.keys()].length;
      const jobs = todo.slice(0, Math.max(0, free)).map((name) => async () => {
        try {
          await pushOne(join(walDir, name), 'lookahead');
        } catch (err) {
          failedAt.set(name, Date.now());
          log.warn('lookahead push failed; PostgreSQL will ask for it again', { file: name, error: oneLine(err) });
        }
      });
      // Not awaited: the scan loop goes on while these upload; each end triggers another scan.
      for (const job of jobs) void job().then(() => void scan());
    } catch (err) {
      log.warn('cannot scan archive_status', { error: oneLine(err) });
    } finally {
      scanning = false;
    }
  };
  if (walDir) {
    scanTimer = setInterval(() => void scan(), options.scanIntervalMs ?? 200);
    void scan();
  }

  const startPrefetcher = (dir: string, name: string, segmentSize: number) => {
    if (prefetchers.has(dir) || closing) return;
    const prefetcher = new Prefetcher(dir, {
      depth: options.prefetch,
      concurrency: options.downloadConcurrency,
      idleMs: 60_000,
      fetch: (n, dest) => fetchWalFile(n, dest, options.fetch),
      isNotFound,
      onStop: () => prefetchers.delete(dir),
    });
    prefetchers.set(dir, prefetcher);
    prefetcher.start().then(
      (started) => {
        if (started) prefetcher.hint(name, segmentSize);
        else prefetchers.delete(dir);
      },
      (err) => {
        prefetchers.delete(dir);
        log.warn('cannot start the prefetcher', { error: oneLine(err) });
      },
    );
  };

  const handle = async (request: Request): Promise<Answer> => {
    if (request.op === 'status') return { ok: true, status: status() };
    if (request.fingerprint !== options.fingerprint) {
      return { ok: false, fallback: true, message: 'the daemon runs with other repository settings (storage, compression or keys) than this client' };
    }
    if (request.op === 'push') {
      const path = request.path;
      const name = basename(path);
      if (request.tag !== undefined) clientTag = request.tag;
      if (request.tag !== undefined && (await consumeMarker(path, request.tag))) return { ok: true, result: 'marked' };
      const running = pushing.get(name);
      if (running) {
        try {
          await running;
          if (request.tag !== undefined && (await consumeMarker(path, request.tag))) return { ok: true, result: 'marked' };
        } catch {
          // push it again below, and report that attempt's outcome
        }
      }
      await pushOne(path, 'request');
      return { ok: true, result: 'stored' };
    }
    if (request.op === 'fetch') {
      const timer = metrics.fetchSeconds.startTimer();
      try {
        const { size, source } = await fetchForRecovery(request.name, request.dest, options.fetch, {
          depth: options.prefetch,
          waitMs: 30_000,
          startPrefetcher,
        });
        counters.fetched++;
        counters.fetchedBytes += size;
        lastFetchAt = new Date();
        metrics.fetched.inc({ source });
        metrics.fetchedBytes.inc(size);
        metrics.lastSuccess.set({ op: 'fetch' }, lastFetchAt.getTime() / 1000);
        timer();
        return { ok: true, result: source };
      } catch (err) {
        if (isNotFound(err)) return { ok: false, notFound: true, message: oneLine(err) };
        counters.failures++;
        metrics.failures.inc({ op: 'fetch' });
        throw err;
      }
    }
    return { ok: false, exitCode: ExitCode.usage, message: 'unknown request' };
  };

  /** Open client connections and requests being answered, so shutdown can wait for them and then close the rest. */
  const connections = new Set<Socket>();
  const answering = new Set<Promise<unknown>>();
  const serve = (socket: Socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
    readRequests(socket, (line) => {
      socket.pause();
      let request: Request;
      try {
        request = JSON.parse(line) as Request;
      } catch {
        socket.end(`${JSON.stringify({ ok: false, exitCode: ExitCode.usage, message: 'bad request' })}\n`);
        return;
      }
      if (closing && request.op !== 'status') {
        socket.end(`${JSON.stringify({ ok: false, fallback: true, message: 'daemon is shutting down' })}\n`);
        return;
      }
      const answer = handle(request).then(
        (result) => socket.end(`${JSON.stringify(result)}\n`),
        (err: unknown) => {
          const exitCode = err instanceof WalshipError ? err.exitCode : ExitCode.storage;
          log.error(oneLine(err), { op: request.op });
          socket.end(`${JSON.stringify({ ok: false, exitCode, message: oneLine(err) })}\n`);
        },
      );
      answering.add(answer);
      void answer.finally(() => answering.delete(answer));
    });
  };

  const socketServer = await listenUnix(options.socketPath, serve);
  let metricsServer: HttpServer | undefined;
  if (options.metricsAddress) metricsServer = await serveMetrics(metrics, options.metricsAddress);

  const status = (): DaemonStatus => ({
    pid: process.pid,
    version,
    startedAt: startedAt.toISOString(),
    socket: options.socketPath,
    metrics: options.metricsAddress ? `http://${options.metricsAddress}/metrics` : undefined,
    storage: options.push.storage.location,
    pgdata: options.pgdata,
    ...counters,
    inFlight: pushing.size + [...prefetchers.values()].reduce((n, p) => n + p.inFlight, 0),
    queued,
    lastPushAt: lastPushAt?.toISOString(),
    lastFetchAt: lastFetchAt?.toISOString(),
  });

  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  let shuttingDown: Promise<void> | undefined;
  const shutdown = () =>
    (shuttingDown ??= (async () => {
      closing = true;
      clearInterval(scanTimer);
      log.info('shutting down: finishing uploads in flight', { uploads: pushing.size });
      // No new connections; requests already accepted finish (they are in `pushing` or fetching).
      const socketClosed = new Promise<void>((r) => socketServer.close(() => r()));
      while (pushing.size) await Promise.allSettled([...pushing.values()]);
      await Promise.allSettled([...answering]);
      for (const socket of connections) socket.destroy();
      await socketClosed;
      await Promise.allSettled([...prefetchers.values()].map((p) => p.stop()));
      if (metricsServer) {
        const metricsClosed = new Promise<void>((r) => metricsServer!.close(() => r()));
        metricsServer.closeAllConnections();
        await metricsClosed;
      }
      await unlink(options.socketPath).catch(() => {});
      await options.push.storage.close?.();
      resolveClosed();
    })());

  log.info('listening', { socket: options.socketPath, metrics: options.metricsAddress, pgdata: options.pgdata });
  return { status, shutdown, closed };
}

/**
 * Listen on a unix socket, mode 0600. A socket file left by a dead daemon is replaced; one a live
 * daemon answers on is not (exit 3).
 */
async function listenUnix(path: string, serve: (socket: Socket) => void): Promise<Server> {
  const existing = await stat(path).catch(() => undefined);
  if (existing) {
    if (!existing.isSocket()) throw new WalshipError(ExitCode.usage, `daemon socket ${path} exists and is not a socket`);
    const alive = await new Promise<boolean>((r) => {
      const probe = connect(path);
      probe.on('connect', () => {
        probe.destroy();
        r(true);
      });
      probe.on('error', () => r(false));
    });
    if (alive) throw new WalshipError(ExitCode.refused, `another walship daemon is listening on ${path}`);
    await unlink(path);
  }
  const server = createServer({ pauseOnConnect: false }, serve);
  const previous = process.umask(0o177);
  try {
    await new Promise<void>((resolvePromise, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolvePromise();
      });
    });
  } finally {
    process.umask(previous);
  }
  await chmod(path, 0o600);
  return server;
}
