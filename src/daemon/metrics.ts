/**
 * The daemon's Prometheus metrics (prom-client, loaded only by the daemon) and the small HTTP
 * server that exposes them on a local address.
 */
import { createServer, type Server } from 'node:http';
import type * as Prom from 'prom-client';

export interface Metrics {
  registry: Prom.Registry;
  pushed: Prom.Counter<'via'>;
  pushedBytes: Prom.Counter;
  fetched: Prom.Counter<'source'>;
  fetchedBytes: Prom.Counter;
  pushSeconds: Prom.Histogram;
  fetchSeconds: Prom.Histogram;
  failures: Prom.Counter<'op'>;
  lastSuccess: Prom.Gauge<'op'>;
  queueDepth: Prom.Gauge;
  inFlight: Prom.Gauge;
}

export async function createMetrics(): Promise<Metrics> {
  const prom = await import('prom-client');
  const registry = new prom.Registry();
  prom.collectDefaultMetrics({ register: registry, prefix: 'walship_daemon_' });
  const buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
  return {
    registry,
    pushed: new prom.Counter({ name: 'walship_wal_pushed_files_total', help: 'WAL files made durable in the repository, by request (PostgreSQL asked) or lookahead (ahead of it)', labelNames: ['via'], registers: [registry] }),
    pushedBytes: new prom.Counter({ name: 'walship_wal_pushed_bytes_total', help: 'Bytes of WAL (uncompressed) pushed', registers: [registry] }),
    fetched: new prom.Counter({ name: 'walship_wal_fetched_files_total', help: 'WAL files handed to PostgreSQL, from the prefetch spool or from storage', labelNames: ['source'], registers: [registry] }),
    fetchedBytes: new prom.Counter({ name: 'walship_wal_fetched_bytes_total', help: 'Bytes of WAL (uncompressed) fetched', registers: [registry] }),
    pushSeconds: new prom.Histogram({ name: 'walship_wal_push_duration_seconds', help: 'Time to make one WAL file durable', buckets, registers: [registry] }),
    fetchSeconds: new prom.Histogram({ name: 'walship_wal_fetch_duration_seconds', help: 'Time to answer one wal-fetch request', buckets, registers: [registry] }),
    failures: new prom.Counter({ name: 'walship_failures_total', help: 'Failed operations', labelNames: ['op'], registers: [registry] }),
    lastSuccess: new prom.Gauge({ name: 'walship_last_success_timestamp_seconds', help: 'Unix time of the last successful operation', labelNames: ['op'], registers: [registry] }),
    queueDepth: new prom.Gauge({ name: 'walship_wal_queue_depth', help: 'WAL files PostgreSQL marked ready that are not archived yet (archive lag, in files)', registers: [registry] }),
    inFlight: new prom.Gauge({ name: 'walship_wal_in_flight', help: 'Uploads and downloads running now', registers: [registry] }),
  };
}

/** Parse host:port ([v6]:port allowed). */
export function parseAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address.trim());
  if (!m) throw new Error(`expected host:port, got '${address}'`);
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw new Error(`port out of range in '${address}'`);
  return { host: (m[1] ?? m[2])!, port };
}

/** Serve GET /metrics on `address`; resolves once listening. */
export function serveMetrics(metrics: Metrics, address: string): Promise<Server> {
  const { host, port } = parseAddress(address);
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('walship daemon: see /metrics\n');
      return;
    }
    metrics.registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
