/**
 * A small Google Cloud Storage JSON-API server for tests: enough of the API for the real
 * `@google-cloud/storage` client to upload (simple media, multipart, resumable in one or many
 * chunks, status queries), download (alt=media, Range, pinned generation), read metadata, list
 * (prefix, maxResults, pageToken) and delete, with `ifGenerationMatch` preconditions (0 = create
 * only; 412 when not met, checked atomically at finalization as GCS does). Objects live in files
 * under --dir; bodies are streamed to disk, never held whole in memory (resumable chunks), so
 * 200 MiB objects are fine. No authentication.
 *
 *   node test/helpers/gcs-server.ts --port 0 --dir /tmp/x --bucket walship-test
 *   -> prints "gcs-server listening on http://127.0.0.1:PORT"
 *
 * Used through test/helpers/emulators.ts (startGcsServer).
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

interface StoredObject {
  name: string;
  generation: string;
  size: number;
  updated: Date;
  created: Date;
  file: string;
  contentType: string;
}

interface Session {
  id: string;
  bucket: string;
  name: string;
  ifGenerationMatch?: string;
  contentType: string;
  file: string;
  persisted: number;
  done?: StoredObject;
  /** Serializes chunk writes of one session. */
  busy: Promise<void>;
}

export interface GcsServerOptions {
  port?: number;
  dir: string;
  buckets: string[];
}

export async function startGcsTestServer(options: GcsServerOptions): Promise<{ url: string; port: number; close(): Promise<void> }> {
  const objectsDir = join(options.dir, 'objects');
  const uploadsDir = join(options.dir, 'uploads');
  await mkdir(objectsDir, { recursive: true });
  await mkdir(uploadsDir, { recursive: true });
  const buckets = new Map<string, Map<string, StoredObject>>(options.buckets.map((b) => [b, new Map()]));
  const sessions = new Map<string, Session>();
  let generationCounter = 0;

  const send = (res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) => {
    const text = body === undefined ? '' : JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', 'content-length': String(Buffer.byteLength(text)), ...headers });
    res.end(text);
  };
  const fail = (res: ServerResponse, status: number, reason: string, message: string) =>
    send(res, status, { error: { code: status, message, errors: [{ domain: 'global', reason, message }] } });

  const resource = (bucket: string, o: StoredObject) => ({
    kind: 'storage#object',
    id: `${bucket}/${o.name}/${o.generation}`,
    selfLink: `/storage/v1/b/${bucket}/o/${encodeURIComponent(o.name)}`,
    name: o.name,
    bucket,
    generation: o.generation,
    metageneration: '1',
    contentType: o.contentType,
    storageClass: 'STANDARD',
    size: String(o.size),
    timeCreated: o.created.toISOString(),
    updated: o.updated.toISOString(),
    etag: `CK${o.generation}`,
  });

  /** Make `temp` the object `name` if the precondition holds; atomic (no await between check and set). */
  const commit = async (bucket: string, name: string, temp: string, size: number, contentType: string, ifGenerationMatch?: string): Promise<StoredObject | 'precondition'> => {
    const objects = buckets.get(bucket)!;
    const current = objects.get(name);
    if (ifGenerationMatch !== undefined) {
      if (ifGenerationMatch === '0' ? current !== undefined : current?.generation !== ifGenerationMatch) {
        await unlink(temp).catch(() => {});
        return 'precondition';
      }
    }
    const generation = String(Date.now() * 1000 + (generationCounter++ % 1000));
    const file = join(objectsDir, `${randomBytes(8).toString('hex')}-${generation}`);
    const now = new Date();
    const stored: StoredObject = { name, generation, size, updated: now, created: now, file, contentType };
    objects.set(name, stored); // set before the rename's await: the check-and-set above is atomic
    await rename(temp, file);
    if (current) unlink(current.file).catch(() => {});
    return stored;
  };

  const readAllBody = async (req: IncomingMessage): Promise<Buffer> => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  };

  const tempFile = () => join(uploadsDir, randomBytes(12).toString('hex'));

  /** multipart/related: JSON metadata part, then the media part. */
  const parseMultipart = (body: Buffer, contentType: string): { metadata: Record<string, any>; media: Buffer } => {
    const boundary = /boundary="?([^";]+)"?/.exec(contentType)?.[1];
    if (!boundary) throw new Error('no boundary');
    const delimiter = Buffer.from(`--${boundary}`);
    const parts: Buffer[] = [];
    let at = body.indexOf(delimiter);
    while (at >= 0) {
      const start = at + delimiter.length;
      if (body.subarray(start, start + 2).toString() === '--') break;
      const next = body.indexOf(delimiter, start);
      if (next < 0) break;
      parts.push(body.subarray(start + 2, next - 2)); // skip CRLF after delimiter, and CRLF before the next
      at = next;
    }
    const split = (part: Buffer) => {
      const end = part.indexOf('\r\n\r\n');
      return { headers: part.subarray(0, end).toString(), content: part.subarray(end + 4) };
    };
    const [meta, media] = parts.map(split);
    if (!meta || !media) throw new Error('expected two parts');
    return { metadata: JSON.parse(meta.content.toString() || '{}'), media: media.content };
  };

  const server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url ?? '/', 'http://gcs');
      const q = url.searchParams;
      const path = url.pathname;
      let m: RegExpExecArray | null;

      // Uploads: POST /upload/storage/v1/b/:bucket/o?uploadType=media|multipart|resumable
      if ((m = /^\/upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(path))) {
        const bucket = decodeURIComponent(m[1]!);
        if (!buckets.has(bucket)) return fail(res, 404, 'notFound', `bucket ${bucket} not found`);
        const uploadType = q.get('uploadType');
        const ifGenerationMatch = q.get('ifGenerationMatch') ?? undefined;
        if (req.method === 'POST' && uploadType === 'media') {
          const name = q.get('name');
          if (!name) return fail(res, 400, 'required', 'name required');
          const temp = tempFile();
          let size = 0;
          req.on('data', (c: Buffer) => (size += c.length));
          await pipeline(req, createWriteStream(temp));
          const result = await commit(bucket, name, temp, size, req.headers['content-type'] ?? 'application/octet-stream', ifGenerationMatch);
          if (result === 'precondition') return fail(res, 412, 'conditionNotMet', 'At least one of the pre-conditions you specified did not hold.');
          return send(res, 200, resource(bucket, result));
        }
        if (req.method === 'POST' && uploadType === 'multipart') {
          const { metadata, media } = parseMultipart(await readAllBody(req), req.headers['content-type'] ?? '');
          const name = q.get('name') ?? metadata.name;
          if (!name) return fail(res, 400, 'required', 'name required');
          const temp = tempFile();
          const handle = await open(temp, 'w');
          await handle.writeFile(media);
          await handle.close();
          const result = await commit(bucket, name, temp, media.length, metadata.contentType ?? 'application/octet-stream', ifGenerationMatch);
          if (result === 'precondition') return fail(res, 412, 'conditionNotMet', 'At least one of the pre-conditions you specified did not hold.');
          return send(res, 200, resource(bucket, result));
        }
        if (req.method === 'POST' && uploadType === 'resumable') {
          const body = await readAllBody(req);
          const metadata = body.length ? JSON.parse(body.toString()) : {};
          const name = q.get('name') ?? metadata.name;
          if (!name) return fail(res, 400, 'required', 'name required');
          const id = randomBytes(16).toString('hex');
          const file = tempFile();
          await (await open(file, 'w')).close();
          sessions.set(id, {
            id,
            bucket,
            name,
            ifGenerationMatch,
            contentType: metadata.contentType ?? req.headers['x-upload-content-type'] ?? 'application/octet-stream',
            file,
            persisted: 0,
            busy: Promise.resolve(),
          });
          // Built from the Host header, so a proxy in front stays in the path.
          const location = `http://${req.headers.host}/upload/storage/v1/b/${encodeURIComponent(bucket)}/o?uploadType=resumable&upload_id=${id}`;
          return send(res, 200, undefined, { location });
        }
        if (req.method === 'PUT' && q.get('upload_id')) {
          const session = sessions.get(q.get('upload_id')!);
          if (!session) return fail(res, 404, 'notFound', 'no such upload session');
          const previous = session.busy;
          let release!: () => void;
          session.busy = new Promise((r) => (release = r));
          await previous;
          try {
            return await resumableChunk(session, req, res);
          } finally {
            release();
          }
        }
        if (req.method === 'DELETE' && q.get('upload_id')) {
          const session = sessions.get(q.get('upload_id')!);
          if (session) {
            sessions.delete(session.id);
            await unlink(session.file).catch(() => {});
          }
          return send(res, 499, undefined);
        }
        return fail(res, 400, 'invalid', `unsupported upload ${req.method} ${uploadType}`);
      }

      // Objects: /storage/v1/b/:bucket/o/:object  and listing /storage/v1/b/:bucket/o
      if ((m = /^\/(?:download\/)?storage\/v1\/b\/([^/]+)\/o(?:\/(.+))?$/.exec(path))) {
        const bucket = decodeURIComponent(m[1]!);
        const objects = buckets.get(bucket);
        if (!objects) return fail(res, 404, 'notFound', `bucket ${bucket} not found`);
        const name = m[2] === undefined ? undefined : decodeURIComponent(m[2]);
        if (name === undefined) {
          if (req.method !== 'GET') return fail(res, 405, 'invalid', 'method not allowed');
          const prefix = q.get('prefix') ?? '';
          const max = Math.min(Number(q.get('maxResults') ?? 1000) || 1000, 1000);
          const after = q.get('pageToken') ? Buffer.from(q.get('pageToken')!, 'base64url').toString() : '';
          const names = [...objects.keys()].filter((n) => n.startsWith(prefix) && n > after).sort();
          const page = names.slice(0, max);
          const body: Record<string, unknown> = { kind: 'storage#objects', items: page.map((n) => resource(bucket, objects.get(n)!)) };
          if (names.length > max) body.nextPageToken = Buffer.from(page[page.length - 1]!).toString('base64url');
          return send(res, 200, body);
        }
        const current = objects.get(name);
        const generation = q.get('generation');
        const found = current && (!generation || generation === current.generation) ? current : undefined;
        if (req.method === 'DELETE') {
          if (!found) return fail(res, 404, 'notFound', `No such object: ${bucket}/${name}`);
          objects.delete(name);
          unlink(found.file).catch(() => {});
          res.writeHead(204);
          return res.end();
        }
        if (req.method !== 'GET') return fail(res, 405, 'invalid', 'method not allowed');
        if (!found) return fail(res, 404, 'notFound', `No such object: ${bucket}/${name}`);
        if (q.get('alt') !== 'media') return send(res, 200, resource(bucket, found));
        const headers: Record<string, string> = {
          'content-type': found.contentType,
          'x-goog-generation': found.generation,
          'x-goog-metageneration': '1',
          'x-goog-stored-content-encoding': 'identity',
          'x-goog-stored-content-length': String(found.size),
          etag: `CK${found.generation}`,
        };
        const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
        let start = 0;
        let end = found.size - 1;
        let status = 200;
        if (range) {
          start = Number(range[1]);
          if (range[2]) end = Math.min(end, Number(range[2]));
          if (start >= found.size) {
            res.writeHead(416, { 'content-range': `bytes */${found.size}` });
            return res.end();
          }
          status = 206;
          headers['content-range'] = `bytes ${start}-${end}/${found.size}`;
        }
        headers['content-length'] = String(Math.max(0, end - start + 1));
        res.writeHead(status, headers);
        if (found.size === 0) return res.end();
        await pipeline(createReadStream(found.file, { start, end, highWaterMark: 1 << 20 }), res).catch(() => {});
        return;
      }
      if ((m = /^\/storage\/v1\/b\/([^/]+)$/.exec(path))) {
        const bucket = decodeURIComponent(m[1]!);
        if (!buckets.has(bucket)) return fail(res, 404, 'notFound', `bucket ${bucket} not found`);
        return send(res, 200, { kind: 'storage#bucket', id: bucket, name: bucket });
      }
      return fail(res, 404, 'notFound', `unknown path ${req.method} ${path}`);
    } catch (err) {
      if (!res.headersSent) fail(res, 500, 'backendError', (err as Error).message);
      else res.destroy();
    }
  });

  /** One PUT to a resumable session: a chunk (Content-Range: bytes A-B/T|*) or a status query (bytes * /T|*). */
  async function resumableChunk(session: Session, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const incomplete = () => {
      const headers: Record<string, string> = {};
      if (session.persisted > 0) headers.range = `bytes=0-${session.persisted - 1}`;
      res.writeHead(308, { ...headers, 'content-length': '0' });
      res.end();
    };
    const finish = async (total: number) => {
      if (session.done) return send(res, 200, resource(session.bucket, session.done));
      const result = await commit(session.bucket, session.name, session.file, total, session.contentType, session.ifGenerationMatch);
      sessions.delete(session.id);
      if (result === 'precondition') return fail(res, 412, 'conditionNotMet', 'At least one of the pre-conditions you specified did not hold.');
      session.done = result;
      sessions.set(session.id, session); // answer repeated finalization queries
      return send(res, 200, resource(session.bucket, result));
    };
    if (session.done) {
      await readAllBody(req);
      return send(res, 200, resource(session.bucket, session.done));
    }
    const header = req.headers['content-range'] ?? '';
    const query = /^bytes \*\/(\d+|\*)$/.exec(header);
    if (query) {
      await readAllBody(req);
      if (query[1] !== '*' && Number(query[1]) === session.persisted) return finish(session.persisted);
      return incomplete();
    }
    const chunk = /^bytes (\d+)-(\d+|\*)\/(\d+|\*)$/.exec(header);
    if (!chunk && header) return fail(res, 400, 'invalid', `bad Content-Range ${header}`);
    const start = chunk ? Number(chunk[1]) : 0;
    const total = chunk && chunk[3] !== '*' ? Number(chunk[3]) : !chunk ? Number(req.headers['content-length'] ?? NaN) : undefined;
    if (start > session.persisted) {
      await readAllBody(req);
      return fail(res, 400, 'invalid', `chunk starts at ${start}, expected ${session.persisted}`);
    }
    // Append what lies past the persisted offset; bytes already persisted (a resend) are skipped.
    const handle = await open(session.file, 'r+');
    let position = start;
    let written = session.persisted;
    try {
      for await (const piece of req) {
        const buf = piece as Buffer;
        const skip = Math.max(0, written - position);
        if (skip < buf.length) {
          const data = buf.subarray(skip);
          await handle.write(data, 0, data.length, written);
          written += data.length;
        }
        position += buf.length;
      }
    } catch {
      // The client went away mid-chunk: keep what arrived (GCS persists received data too).
    } finally {
      await handle.close();
      session.persisted = written;
    }
    if (req.destroyed && !req.complete) {
      res.destroy();
      return;
    }
    if (total !== undefined && !Number.isNaN(total) && session.persisted >= total) {
      if (session.persisted !== total) return fail(res, 400, 'invalid', `got ${session.persisted} bytes, declared ${total}`);
      return finish(total);
    }
    return incomplete();
  }

  await new Promise<void>((done) => server.listen(options.port ?? 0, '127.0.0.1', done));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  const arg = (name: string, fallback?: string) => {
    const i = process.argv.indexOf(`--${name}`);
    const value = i >= 0 ? process.argv[i + 1] : fallback;
    if (value === undefined) throw new Error(`--${name} is required`);
    return value;
  };
  const server = await startGcsTestServer({ port: Number(arg('port', '0')), dir: arg('dir'), buckets: arg('bucket', 'walship-test').split(',') });
  process.stdout.write(`gcs-server listening on ${server.url}\n`);
  const stop = () => void server.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
