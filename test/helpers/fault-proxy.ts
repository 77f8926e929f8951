/**
 * A fault-injecting HTTP proxy (node:http, loopback only) placed between a storage SDK and an
 * emulator. Requests pass through unchanged (Host header included, so signatures stay valid) unless
 * a rule matches; rules answer with an error status, reset the connection, stall forever, or cut a
 * response short.
 *
 * `s3Conditional: true` adds what s3rver lacks: If-None-Match: * on PUT (PutObject) and on POST
 * ?uploadId (CompleteMultipartUpload) answers 412 PreconditionFailed when the key exists. Writes to
 * one key are serialized inside the proxy (check + forwarded write under a per-key lock), so two
 * concurrent conditional creates behave as on S3: exactly one wins.
 */
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface ProxiedRequest {
  index: number;
  method: string;
  /** Path and query as sent. */
  url: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
}

export type Fault =
  /** Answer this status without forwarding (the request body is read first). */
  | { status: number; body?: string; headers?: Record<string, string> }
  /** Read `afterBytes` of the request body (default 0), then destroy the connection. */
  | { reset: true; afterBytes?: number }
  /** Read the request, never answer, keep the connection open. */
  | { stall: true }
  /** Forward, but send only `truncate` bytes of the response body, then destroy the connection. */
  | { truncate: number };

export interface Rule {
  match: (req: ProxiedRequest) => boolean;
  fault: Fault | ((req: ProxiedRequest) => Fault);
  /** How many matching requests it applies to; Infinity for all. */
  times: number;
  hits: number;
}

export interface FaultProxy {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  port: number;
  /** Every request seen, in order. */
  requests: ProxiedRequest[];
  rules: Rule[];
  /** Add a rule; returns it (its `hits` counts applications). */
  inject(match: (req: ProxiedRequest) => boolean, fault: Rule['fault'], times?: number): Rule;
  clear(): void;
  close(): Promise<void>;
}

/** S3-style XML error body. */
export function s3Error(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>fault-proxy</RequestId></Error>`;
}

export async function startFaultProxy(target: string, options: { s3Conditional?: boolean } = {}): Promise<FaultProxy> {
  const upstream = new URL(target);
  const sockets = new Set<Socket>();
  const locks = new Map<string, Promise<void>>();
  const requests: ProxiedRequest[] = [];
  const rules: Rule[] = [];

  const forward = (req: IncomingMessage, res: ServerResponse, body: IncomingMessage | Buffer, truncate?: number): Promise<void> =>
    new Promise((done) => {
      // `expect: 100-continue` is not signed; drop it, the body is sent at once.
      const { expect: _expect, ...headers } = req.headers;
      const out = httpRequest(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
          if (truncate === undefined) {
            answer.pipe(res);
            answer.on('end', () => done());
            answer.on('error', () => done());
            return;
          }
          let sent = 0;
          let cut = false;
          const cutNow = () => {
            cut = true;
            answer.destroy();
            // Let the written bytes go out, then cut the connection.
            res.flushHeaders();
            setTimeout(() => res.socket?.destroy(), 20);
            done();
          };
          if (truncate === 0) return cutNow();
          answer.on('data', (chunk: Buffer) => {
            if (cut) return;
            const piece = chunk.subarray(0, truncate - sent);
            sent += piece.length;
            res.write(piece);
            if (sent >= truncate) cutNow();
          });
          answer.on('end', () => {
            if (cut) return;
            res.end();
            done();
          });
        },
      );
      out.on('error', () => {
        res.socket?.destroy();
        done();
      });
      if (Buffer.isBuffer(body)) out.end(body);
      else body.pipe(out);
    });

  const readBody = async (req: IncomingMessage): Promise<Buffer> => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  };

  const exists = (path: string, headers: IncomingHttpHeaders): Promise<boolean> =>
    new Promise((resolveExists, reject) => {
      const head = httpRequest({ host: upstream.hostname, port: upstream.port, method: 'HEAD', path, headers: { host: headers.host } }, (answer) => {
        answer.resume();
        resolveExists(answer.statusCode === 200);
      });
      head.on('error', reject);
      head.end();
    });

  const withLock = async (key: string, work: () => Promise<void>): Promise<void> => {
    const previous = locks.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const chained = previous.then(() => mine);
    locks.set(key, chained);
    await previous;
    try {
      await work();
    } finally {
      release();
      if (locks.get(key) === chained) locks.delete(key);
    }
  };

  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const info: ProxiedRequest = {
      index: requests.length,
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      path: decodeURIComponent(url.pathname),
      query: url.searchParams,
      headers: req.headers,
    };
    requests.push(info);
    const rule = rules.find((r) => r.hits < r.times && r.match(info));
    try {
      if (rule) {
        rule.hits++;
        const fault = typeof rule.fault === 'function' ? rule.fault(info) : rule.fault;
        if ('status' in fault) {
          await readBody(req);
          res.writeHead(fault.status, { 'content-type': 'application/xml', ...fault.headers });
          res.end(fault.body ?? '');
          return;
        }
        if ('reset' in fault) {
          let seen = 0;
          const limit = fault.afterBytes ?? 0;
          if (limit === 0) {
            req.socket.destroy();
            return;
          }
          req.on('data', (chunk: Buffer) => {
            seen += chunk.length;
            if (seen >= limit) req.socket.destroy();
          });
          return;
        }
        if ('stall' in fault) {
          req.resume();
          return; // never answered; closed by close()
        }
        await forward(req, res, req, fault.truncate);
        return;
      }
      const conditional =
        options.s3Conditional &&
        req.headers['if-none-match'] === '*' &&
        ((req.method === 'PUT' && !url.searchParams.has('uploadId') && !req.headers['x-amz-copy-source']) ||
          (req.method === 'POST' && url.searchParams.has('uploadId')));
      if (conditional) {
        // Read the body before taking the lock: the slow part stays concurrent, the check + write is serial.
        const body = await readBody(req);
        await withLock(url.pathname, async () => {
          if (await exists(url.pathname, req.headers)) {
            res.writeHead(412, { 'content-type': 'application/xml' });
            res.end(s3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold'));
            return;
          }
          await forward(req, res, body);
        });
        return;
      }
      await forward(req, res, req);
    } catch {
      res.socket?.destroy();
    }
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    requests,
    rules,
    inject(match, fault, times = 1) {
      const rule: Rule = { match, fault, times, hits: 0 };
      rules.push(rule);
      return rule;
    },
    clear() {
      rules.length = 0;
      requests.length = 0;
    },
    close: () =>
      new Promise<void>((done) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => done());
      }),
  };
}
