import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { encodeObject, type EncodeOptions } from '../codec/codec.ts';
import { postgresError, refusedError, WalshipError } from '../errors.ts';
import { log } from '../log.ts';
import { checkRepositoryEncryption, keys } from '../repository.ts';
import { isExists, type Storage } from '../storage/storage.ts';
import { version as walshipVersion } from '../version.ts';
import { archiveHeaderMaxBytes, parseArchiveHeader, type ArchiveHeader } from './archive-header.ts';
import { dumpManifestFormat, dumpName, writeManifest, type DumpFile, type DumpManifest } from './manifest.ts';
import { startTool, toolFailure, toolMessage, toolWarnings, type PgTool, type PgTools, type ToolProcess } from './tools.ts';

export interface DumpPushContext {
  storage: Storage;
  encode: EncodeOptions;
  tools: PgTools;
  /** WALSHIP_ALLOW_UNENCRYPTED: store unencrypted dumps in a repository walship.json records as encrypted. */
  allowUnencrypted?: boolean | undefined;
}

/** Like every writer: never store plaintext in an encrypted repository by accident (exit 3), record new encryption. */
async function checkEncryption(ctx: DumpPushContext): Promise<void> {
  const { encryptionRecord } = await import('../codec/keys.ts');
  await checkRepositoryEncryption(ctx.storage, undefined, encryptionRecord(ctx.encode.encryption), { allowUnencrypted: ctx.allowUnencrypted });
}

/**
 * pg_dump -Fc of one database into dumps/<name>/dump, manifest last. `database` is what pg_dump's
 * -d takes (a name or a conninfo); without it libpq's defaults (PGDATABASE, the user name) apply,
 * and the manifest records the database pg_dump actually connected to.
 */
export async function pushDatabaseDump(ctx: DumpPushContext, database: string | undefined): Promise<DumpManifest> {
  await checkEncryption(ctx);
  const started = new Date();
  const dump = new ToolOutput(ctx.tools, 'pg_dump', [...pgDumpArgs, ...(database === undefined ? [] : ['-d', database])]);
  let header: ArchiveHeader;
  let name: string;
  try {
    header = await dump.header();
    name = await unusedName(ctx.storage, (suffix) => dumpName(started, header.database, suffix));
  } catch (err) {
    dump.abort();
    throw err;
  }
  const written: string[] = [];
  try {
    const file = await storePayload(ctx, name, 'dump', dump, written);
    const entry: DumpFile = { file: 'dump', kind: 'database', database: header.database, format: 'custom', ...file, serverVersion: header.serverVersion, pgDumpVersion: header.pgDumpVersion };
    const manifest = manifestOf(ctx, name, 'database', started, [entry], header.serverVersion, header.pgDumpVersion, header.database);
    // An ambiguous failure (a timeout) may still have stored the manifest: remove it first, then the payloads.
    written.unshift(keys.dumpManifest(name));
    await writeManifest(ctx.storage, manifest, ctx.encode);
    log.info('dump stored', { name, database: header.database, bytes: manifest.size, stored: manifest.storedSize, seconds: elapsed(started) });
    return manifest;
  } catch (err) {
    dump.abort();
    await removeQuietly(ctx.storage, written);
    throw err;
  }
}

/**
 * `--all`: the cluster's globals (pg_dumpall --globals-only: roles, role settings, tablespaces) and
 * a pg_dump -Fc of every database that accepts connections (templates excluded), one object each,
 * under one name and one manifest. Like pg_dumpall, each database is its own snapshot.
 */
export async function pushClusterDump(ctx: DumpPushContext): Promise<DumpManifest> {
  await checkEncryption(ctx);
  const started = new Date();
  const { serverVersion, databases } = await clusterFacts(ctx.tools);
  const pgDumpVersion = await toolVersion(ctx.tools, 'pg_dump');
  const name = await unusedName(ctx.storage, (suffix) => dumpName(started, undefined, suffix));
  const written: string[] = [];
  const files: DumpFile[] = [];
  let running: ToolOutput | undefined;
  try {
    running = new ToolOutput(ctx.tools, 'pg_dumpall', ['--globals-only', '--no-password'], { PGDATABASE: connectDatabase(ctx.tools) });
    files.push({ file: 'globals.sql', kind: 'globals', format: 'plain', ...(await storePayload(ctx, name, 'globals.sql', running, written)), serverVersion, pgDumpVersion });
    for (const [i, database] of databases.entries()) {
      // The name goes in PGDATABASE, not -d: libpq reads -d as a conninfo when it holds '='.
      running = new ToolOutput(ctx.tools, 'pg_dump', pgDumpArgs, { PGDATABASE: database });
      const header = await running.header();
      const file = `databases/${String(i + 1).padStart(4, '0')}.dump`;
      files.push({ file, kind: 'database', database, format: 'custom', ...(await storePayload(ctx, name, file, running, written)), serverVersion: header.serverVersion, pgDumpVersion: header.pgDumpVersion });
    }
    running = undefined;
    const manifest = manifestOf(ctx, name, 'cluster', started, files, serverVersion, pgDumpVersion, undefined);
    written.unshift(keys.dumpManifest(name));
    await writeManifest(ctx.storage, manifest, ctx.encode);
    log.info('cluster dump stored', { name, databases: databases.length, bytes: manifest.size, stored: manifest.storedSize, seconds: elapsed(started) });
    return manifest;
  } catch (err) {
    running?.abort();
    await removeQuietly(ctx.storage, written);
    throw err;
  }
}

/** Custom format, uncompressed (walship's codec compresses: compressing twice wastes CPU and ratio), never prompt. */
const pgDumpArgs = ['--format=custom', '--compress=0', '--no-password'];

function manifestOf(
  ctx: DumpPushContext,
  name: string,
  kind: DumpManifest['kind'],
  started: Date,
  files: DumpFile[],
  serverVersion: string,
  pgDumpVersion: string,
  database: string | undefined,
): DumpManifest {
  return {
    format: dumpManifestFormat,
    name,
    kind,
    database,
    started: started.toISOString(),
    finished: new Date().toISOString(),
    serverVersion,
    pgDumpVersion,
    size: files.reduce((sum, f) => sum + f.size, 0),
    storedSize: files.reduce((sum, f) => sum + f.storedSize, 0),
    sha256: kind === 'database' ? files[0]!.sha256 : undefined,
    codec: { compression: ctx.encode.compression, level: ctx.encode.compression === 'zstd' ? (ctx.encode.level ?? 1) : undefined, encrypted: Boolean(ctx.encode.encryption?.encrypt) },
    files,
    walshipVersion,
  };
}

/** Stream one tool's output through the codec into dumps/<name>/<file>; resolves once it is durable. */
async function storePayload(ctx: DumpPushContext, name: string, file: string, output: ToolOutput, written: string[]) {
  const key = keys.dumpFile(name, file);
  let storedSize = 0;
  const encoded = await encodeObject(output.body(), ctx.encode);
  const counted = Readable.from(
    (async function* () {
      for await (const chunk of encoded as AsyncIterable<Buffer>) {
        storedSize += chunk.length;
        yield chunk;
      }
      await output.check();
    })(),
    { objectMode: false },
  );
  try {
    await ctx.storage.put(key, counted, { ifAbsent: true });
  } catch (err) {
    // A failed put leaves nothing visible (Storage contract); an existing key is someone else's.
    if (isExists(err)) throw refusedError(`dump name ${name} was taken by another dump-push at the same moment; run dump-push again`);
    throw err;
  }
  written.push(key);
  const { size, sha256 } = output.result();
  log.debug('dump payload stored', { key, bytes: size, stored: storedSize });
  return { size, sha256, storedSize };
}

/** The first free name (a second dump of the same database in the same second gets a suffix). */
async function unusedName(storage: Storage, make: (suffix: number) => string): Promise<string> {
  for (let suffix = 0; ; suffix++) {
    const name = make(suffix);
    let taken = false;
    for await (const _ of storage.list(keys.dumpPrefix(name))) {
      taken = true;
      break;
    }
    if (!taken) return name;
  }
}

async function removeQuietly(storage: Storage, written: string[]): Promise<void> {
  if (!written.length) return;
  try {
    await storage.delete(written);
    log.debug('removed partial dump objects', { count: written.length });
  } catch (err) {
    log.warn(`could not remove partial dump objects (${(err as Error).message}); they have no manifest, so no listing shows them`);
  }
}

const elapsed = (since: Date) => Math.round((Date.now() - since.getTime()) / 100) / 10;

/** The database psql and pg_dumpall connect to for cluster-wide facts: PGDATABASE, else postgres. */
const connectDatabase = (tools: PgTools) => tools.env.PGDATABASE || 'postgres';

/** Server version and the databases --all dumps: every one that accepts connections, templates excluded. */
async function clusterFacts(tools: PgTools): Promise<{ serverVersion: string; databases: string[] }> {
  const psql = new ToolOutput(
    tools,
    'psql',
    ['--no-psqlrc', '--no-align', '--tuples-only', '--record-separator-zero', '--no-password', '-v', 'ON_ERROR_STOP=1',
      '-c', "SELECT current_setting('server_version')",
      '-c', 'SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname'],
    { PGDATABASE: connectDatabase(tools) },
  );
  const chunks: Buffer[] = [];
  for await (const chunk of psql.body()) chunks.push(chunk as Buffer);
  await psql.check();
  const records = Buffer.concat(chunks).toString('utf8').split('\0').filter((r) => r !== '');
  const [serverVersion, ...databases] = records.map((r) => r.replace(/^\n/, ''));
  if (!serverVersion) throw postgresError('psql: no server version in the answer');
  return { serverVersion, databases };
}

async function toolVersion(tools: PgTools, tool: PgTool): Promise<string> {
  const out = new ToolOutput(tools, tool, ['--version']);
  const chunks: Buffer[] = [];
  for await (const chunk of out.body()) chunks.push(chunk as Buffer);
  await out.check();
  // "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" → "15.18 (Debian 15.18-0+deb12u1)", as the archive header has it.
  return Buffer.concat(chunks).toString('utf8').trim().replace(/^\S+ \(PostgreSQL\) /, '');
}

/**
 * A client program's stdout as one pass-once stream: hashed and counted as it flows, ending
 * only when the program has exited 0 (a failing pg_dump turns into a stream error, so a storage
 * put never completes on a truncated dump). Nothing is buffered beyond the archive header.
 */
class ToolOutput {
  readonly #tool: PgTool;
  readonly #process: ToolProcess;
  readonly #hash = createHash('sha256');
  #size = 0;
  #done = false;
  #iterator: AsyncIterator<Buffer>;
  #head: Buffer[] = [];
  #header: ArchiveHeader | undefined;

  constructor(tools: PgTools, tool: PgTool, args: string[], extraEnv?: Record<string, string>) {
    this.#tool = tool;
    this.#process = startTool(tools, tool, args, { stdin: 'ignore', stdout: 'pipe' }, extraEnv);
    this.#iterator = this.#chunks()[Symbol.asyncIterator]();
  }

  async *#chunks(): AsyncGenerator<Buffer> {
    const stdout = this.#process.child.stdout!;
    for await (const chunk of stdout as AsyncIterable<Buffer>) {
      this.#hash.update(chunk);
      this.#size += chunk.length;
      yield chunk;
    }
  }

  /**
   * Once the output has ended: throw the program's failure (exit 6, its message) if it failed.
   * The failure is raised here, by the caller's own generator just before its stream would end,
   * never as an error inside a composed stream chain (where it could escape as an uncaught
   * 'error' event): a put sees its body fail and never commits.
   */
  async check(): Promise<void> {
    const status = await this.#process.exited;
    if (status.code !== 0) throw toolFailure(this.#tool, status, this.#process.stderr());
    if (!this.#done) for (const warning of toolWarnings(this.#process.stderr())) log.warn(warning);
    this.#done = true;
  }

  /** Read until the archive header is complete (pg_dump -Fc output). */
  async header(): Promise<ArchiveHeader> {
    while (!this.#header) {
      const next = await this.#iterator.next();
      const head = Buffer.concat(this.#head);
      if (next.done) {
        await this.check();
        throw postgresError(`${this.#tool} ended before writing a whole archive header${this.#stderrHint()}`);
      }
      this.#head.push(next.value);
      try {
        this.#header = parseArchiveHeader(Buffer.concat([head, next.value]).subarray(0, archiveHeaderMaxBytes));
      } catch (err) {
        throw postgresError(`${this.#tool} output: ${(err as Error).message}`);
      }
    }
    return this.#header;
  }

  #stderrHint(): string {
    const message = toolMessage(this.#process.stderr());
    return message ? `: ${message}` : '';
  }

  /** The whole output, header bytes included; call check() after it ended. */
  body(): Readable {
    const head = this.#head;
    this.#head = [];
    const iterator = this.#iterator;
    return Readable.from(
      (async function* () {
        yield* head;
        for (;;) {
          const next = await iterator.next();
          if (next.done) return;
          yield next.value;
        }
      })(),
      { objectMode: false },
    );
  }

  /** Size and SHA-256 of everything the program wrote; only once check() found it exited 0. */
  result(): { size: number; sha256: string } {
    if (!this.#done) throw new WalshipError(6, `${this.#tool} output was not read to its end`);
    return { size: this.#size, sha256: this.#hash.digest('hex') };
  }

  /** Stop the program: close our end of its output (anything it started dies of SIGPIPE) and terminate it. */
  abort(): void {
    this.#process.child.stdout?.destroy();
    if (this.#process.child.exitCode === null && this.#process.child.signalCode === null) this.#process.child.kill('SIGTERM');
  }
}
