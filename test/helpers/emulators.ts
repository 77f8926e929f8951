/**
 * Start and stop storage emulators on free loopback ports with temporary directories, for any test:
 *
 *   const s3 = await startS3rver();        // s3rver (S3)
 *   const az = await startAzurite();       // azurite blob service (Azure)
 *   const gs = await startGcsServer();     // test/helpers/gcs-server.ts (GCS JSON API)
 *   Object.assign(process.env, s3.env);    // credentials the SDK's default chain picks up
 *   ... use s3.url (a walship storage URL) ...
 *   await s3.stop();
 *
 * Each runs as a child process so its memory does not count in the test's RSS, and each is killed
 * (with its directory removed) by stop() or when the test process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export interface Emulator {
  /** walship storage URL for the emulator's bucket/container (no prefix). */
  url: string;
  /** The emulator's HTTP endpoint, e.g. http://127.0.0.1:4568. */
  endpoint: string;
  /** Bucket or container name. */
  bucket: string;
  /** Credential variables for the SDK (set them in process.env or pass them as the env option). */
  env: Record<string, string>;
  /** Build a URL for another endpoint (e.g. a fault proxy in front of this emulator) and prefix. */
  urlFor(options?: { endpoint?: string; prefix?: string; extra?: Record<string, string> }): string;
  stop(): Promise<void>;
}

const root = resolve(import.meta.dirname, '../..');
const node = process.execPath;
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** A free TCP port on 127.0.0.1 (for servers that cannot report the port they bound). */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/** Spawn a server and wait until a line of its output matches `ready` (returns the match). */
async function spawnServer(name: string, args: string[], ready: RegExp, timeoutMs = 30_000): Promise<{ child: ChildProcess; match: RegExpMatchArray }> {
  const child = spawn(node, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
  children.add(child);
  child.on('exit', () => children.delete(child));
  let output = '';
  try {
    const match = await new Promise<RegExpMatchArray>((resolveReady, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} did not start within ${timeoutMs} ms:\n${output}`)), timeoutMs);
      const onData = (data: Buffer) => {
        output += data.toString();
        const m = output.match(ready);
        if (m) {
          clearTimeout(timer);
          resolveReady(m);
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited with ${code} before it was ready:\n${output}`));
      });
    });
    // Keep draining output so the child never blocks on a full pipe.
    child.stdout!.resume();
    child.stderr!.resume();
    return { child, match };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((done) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(timer);
      done();
    });
    child.kill('SIGTERM');
  });
}

function query(options: Record<string, string | undefined>): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(options)) if (v !== undefined) params.set(k, v);
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** s3rver on a free port; bucket `walship-test` created; path-style URL with region us-east-1. */
export async function startS3rver(options: { bucket?: string } = {}): Promise<Emulator> {
  const bucket = options.bucket ?? 'walship-test';
  const dir = await mkdtemp(join(tmpdir(), 'walship-s3rver-'));
  const { child, match } = await spawnServer(
    's3rver',
    // s3rver's ListObjectsV2 continuation tokens use DES, which OpenSSL 3 keeps in its legacy provider.
    ['--openssl-legacy-provider', join(root, 'node_modules/s3rver/bin/s3rver.js'), '-d', dir, '-a', '127.0.0.1', '-p', '0', '--silent', '--configure-bucket', bucket],
    /S3rver listening on [\d.]+:(\d+)/,
  );
  const endpoint = `http://127.0.0.1:${match[1]}`;
  const urlFor: Emulator['urlFor'] = (o = {}) =>
    `s3://${bucket}${o.prefix ? `/${o.prefix}` : ''}${query({ endpoint: o.endpoint ?? endpoint, region: 'us-east-1', pathStyle: 'true', ...o.extra })}`;
  return {
    url: urlFor(),
    endpoint,
    bucket,
    env: { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1', AWS_EC2_METADATA_DISABLED: 'true' },
    urlFor,
    stop: async () => {
      await stopChild(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Azurite's well-known development account (public, documented by Microsoft; not a secret). */
export const azuriteAccount = 'devstoreaccount1';
export const azuriteKey = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

/** azurite (blob service only) on a free port, on-disk in a temp dir, loose, any API version. */
export async function startAzurite(options: { container?: string } = {}): Promise<Emulator> {
  const container = options.container ?? 'walship-test';
  const dir = await mkdtemp(join(tmpdir(), 'walship-azurite-'));
  let started: { child: ChildProcess; port: number } | undefined;
  for (let tries = 0; !started; tries++) {
    const port = await freePort();
    try {
      const { child } = await spawnServer(
        'azurite',
        [
          join(root, 'node_modules/azurite/dist/src/blob/main.js'),
          '--blobHost', '127.0.0.1', '--blobPort', String(port), '--location', dir,
          '--loose', '--skipApiVersionCheck', '--silent', '--disableTelemetry',
        ],
        /successfully listen/,
      );
      started = { child, port };
    } catch (err) {
      if (tries >= 3) throw err; // the port was taken between freePort() and listen: try another
    }
  }
  const endpoint = `http://127.0.0.1:${started.port}/${azuriteAccount}`;
  const connectionString = `DefaultEndpointsProtocol=http;AccountName=${azuriteAccount};AccountKey=${azuriteKey};BlobEndpoint=${endpoint};`;
  // Create the container with the SDK (lazily imported, like the backend does).
  const { BlobServiceClient } = await import('@azure/storage-blob');
  await BlobServiceClient.fromConnectionString(connectionString).getContainerClient(container).createIfNotExists();
  const child = started.child;
  const urlFor: Emulator['urlFor'] = (o = {}) =>
    `azure://${container}${o.prefix ? `/${o.prefix}` : ''}${query({ endpoint: o.endpoint ? `${o.endpoint}/${azuriteAccount}` : undefined, ...o.extra })}`;
  return {
    url: urlFor(),
    endpoint,
    bucket: container,
    env: { AZURE_STORAGE_CONNECTION_STRING: connectionString },
    urlFor,
    stop: async () => {
      await stopChild(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The in-repo GCS JSON-API server (test/helpers/gcs-server.ts) on a free port with a temp dir. */
export async function startGcsServer(options: { bucket?: string } = {}): Promise<Emulator> {
  const bucket = options.bucket ?? 'walship-test';
  const dir = await mkdtemp(join(tmpdir(), 'walship-gcs-'));
  const { child, match } = await spawnServer(
    'gcs-server',
    [join(root, 'test/helpers/gcs-server.ts'), '--port', '0', '--dir', dir, '--bucket', bucket],
    /gcs-server listening on http:\/\/127\.0\.0\.1:(\d+)/,
  );
  const endpoint = `http://127.0.0.1:${match[1]}`;
  const urlFor: Emulator['urlFor'] = (o = {}) =>
    `gs://${bucket}${o.prefix ? `/${o.prefix}` : ''}${query({ endpoint: o.endpoint ?? endpoint, ...o.extra })}`;
  return {
    url: urlFor(),
    endpoint,
    bucket,
    env: { GOOGLE_CLOUD_PROJECT: 'walship-test' },
    urlFor,
    stop: async () => {
      await stopChild(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
