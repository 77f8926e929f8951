import { createHash } from 'node:crypto';
import { mkdir, open, readdir, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { decodeObject, type Encryption } from '../codec/codec.ts';
import { integrityError, refusedError, usageError, WalshipError } from '../errors.ts';
import { syncDirectory, writeAll } from '../fsutil.ts';
import { log } from '../log.ts';
import { keys } from '../repository.ts';
import type { Storage } from '../storage/storage.ts';
import { safeName, type DumpFile, type DumpManifest } from './manifest.ts';
import { startTool, toolFailure, type PgTools } from './tools.ts';

export interface DumpFetchContext {
  storage: Storage;
  encryption?: Encryption | undefined;
}

/**
 * Which payload of a dump the caller means: the one database of a database dump; for a cluster
 * dump the member `source` database, or its globals script. Undefined: every file (a cluster dump
 * fetched into a directory).
 */
export function selectFile(manifest: DumpManifest, choice: { source?: string | undefined; globals?: boolean | undefined }): DumpFile | undefined {
  if (choice.globals) {
    const globals = manifest.files.find((f) => f.kind === 'globals');
    if (!globals) throw usageError(`dump ${manifest.name} is a dump of database ${manifest.database}; it has no globals (those come with dump-push --all)`);
    return globals;
  }
  if (manifest.kind === 'database') {
    if (choice.source !== undefined && choice.source !== manifest.database) {
      throw usageError(`dump ${manifest.name} holds database ${manifest.database}, not ${choice.source}`);
    }
    return manifest.files[0]!;
  }
  if (choice.source === undefined) return undefined;
  const member = manifest.files.find((f) => f.kind === 'database' && f.database === choice.source);
  if (!member) throw usageError(`dump ${manifest.name} has no database ${choice.source}; it has ${databasesOf(manifest)}`);
  return member;
}

export const databasesOf = (m: DumpManifest) =>
  m.files
    .filter((f) => f.kind === 'database')
    .map((f) => f.database)
    .join(', ') || 'none';

/** The decoded payload, checked against the manifest's size and SHA-256 as it ends (exit 4 on mismatch). */
async function verifiedPayload(ctx: DumpFetchContext, manifest: DumpManifest, file: DumpFile): Promise<AsyncIterable<Buffer>> {
  const key = keys.dumpFile(manifest.name, file.file);
  const what = `${ctx.storage.location}/${key}`;
  const source = decodeObject(await ctx.storage.get(key), ctx.encryption, what);
  return (async function* () {
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of source as AsyncIterable<Buffer>) {
      hash.update(chunk);
      size += chunk.length;
      yield chunk;
    }
    const digest = hash.digest('hex');
    if (size !== file.size || digest !== file.sha256) {
      throw integrityError(`${what}: decoded to ${size} bytes with sha256 ${digest}; the manifest says ${file.size} bytes, sha256 ${file.sha256}`);
    }
  })();
}

/**
 * Write one payload to `dest`: a temp file beside it, fsync, checksum verified, then rename, so
 * `dest` appears only complete and correct. Refuses (exit 3) an existing `dest`.
 */
export async function fetchToFile(ctx: DumpFetchContext, manifest: DumpManifest, file: DumpFile, dest: string): Promise<number> {
  await refuseExisting(dest);
  const temp = join(dirname(dest), `.${basename(dest)}.walship-${process.pid}`);
  const out = await open(temp, 'wx', 0o600).catch((err: NodeJS.ErrnoException) => {
    throw cannotWrite(dest, err);
  });
  try {
    let size: number;
    try {
      size = await writeAll(out, await verifiedPayload(ctx, manifest, file));
      await out.sync();
    } catch (err) {
      throw localFailure(dest, err);
    } finally {
      await out.close();
    }
    await rename(temp, dest).catch((err: NodeJS.ErrnoException) => {
      throw cannotWrite(dest, err);
    });
    await syncDirectory(dirname(resolve(dest))).catch(() => {});
    log.info('dump fetched', { name: manifest.name, file: file.file, dest, bytes: size });
    return size;
  } catch (err) {
    await unlink(temp).catch(() => {});
    throw err;
  }
}

/** Every file of a cluster dump into a new (or empty) directory: globals.sql and <database>.dump. */
export async function fetchToDirectory(ctx: DumpFetchContext, manifest: DumpManifest, dir: string): Promise<string[]> {
  let created = false;
  try {
    const entries = await readdir(dir);
    if (entries.length) throw refusedError(`${dir} is not empty; fetch a cluster dump into a new or empty directory`);
  } catch (err) {
    if (err instanceof WalshipError) throw err;
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw cannotWrite(dir, err as NodeJS.ErrnoException);
    await mkdir(dir, { mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
      throw cannotWrite(dir, e);
    });
    created = true;
  }
  const written: string[] = [];
  const used = new Set<string>();
  try {
    for (const file of manifest.files) {
      let local = file.kind === 'globals' ? 'globals.sql' : `${safeName(file.database ?? 'db')}.dump`;
      for (let i = 2; used.has(local); i++) local = `${safeName(file.database ?? 'db')}_${i}.dump`;
      used.add(local);
      const path = join(dir, local);
      await fetchToFile(ctx, manifest, file, path);
      written.push(path);
    }
    return written;
  } catch (err) {
    for (const path of written) await unlink(path).catch(() => {});
    if (created) await rmdir(dir).catch(() => {});
    throw err;
  }
}

/** One payload to stdout (`-o -`), e.g. into `pg_restore -l`; the checksum is checked at the end. */
export async function fetchToStdout(ctx: DumpFetchContext, manifest: DumpManifest, file: DumpFile): Promise<void> {
  try {
    await pipeline(Readable.from(await verifiedPayload(ctx, manifest, file), { objectMode: false }), process.stdout);
  } catch (err) {
    throw localFailure('stdout', err, false);
  }
}

export interface RestoreOptions {
  /** The database to restore into (pg_restore -d): it must exist and be empty, unless `pgRestoreArgs` has --clean or --create. */
  dbname: string;
  /** Passed to pg_restore as they are (after `--` on the command line). */
  pgRestoreArgs: string[];
  tools: PgTools;
}

/** pg_restore options walship sets itself, or that cannot work on a stream. */
const forbidden: [RegExp, string][] = [
  [/^(-d|--dbname)(=|$)|^-d./, 'give the target with --dbname'],
  [/^(-f|--file)(=|$)|^-f./, 'to write a file use -o'],
  [/^(-h|--host|-p|--port|-U|--username)(=|$)|^-[hpU]./, 'set PGHOST, PGPORT, PGUSER (or pghost, pgport, pguser in the config file) instead'],
  [/^(-j|--jobs)(=|$)|^-j./, 'parallel restore needs a seekable file: dump-fetch -o FILE, then pg_restore -j N -d DB FILE'],
];

export function checkPgRestoreArgs(args: string[]): void {
  for (const arg of args) {
    for (const [pattern, hint] of forbidden) {
      if (pattern.test(arg)) throw usageError(`pg_restore option ${arg.split('=')[0]} is not passed through: ${hint}`);
    }
  }
}

/**
 * Stream a custom-format payload into `pg_restore -d <dbname>`. The target must exist and hold no
 * user objects (refused, exit 3, otherwise) unless the pass-through options ask pg_restore to
 * --clean or --create. pg_restore's failure (including "errors ignored on restore") is exit 6.
 */
export async function restoreDump(ctx: DumpFetchContext, manifest: DumpManifest, file: DumpFile, options: RestoreOptions): Promise<void> {
  if (file.format !== 'custom') throw usageError(`${file.file} of dump ${manifest.name} is an SQL script; fetch it with -o and run it with psql -f`);
  checkPgRestoreArgs(options.pgRestoreArgs);
  const replaces = options.pgRestoreArgs.some((a) => /^(-c|--clean|-C|--create)$/.test(a));
  if (!replaces) await refuseNonEmptyDatabase(options.tools, options.dbname);
  const payload = await verifiedPayload(ctx, manifest, file);
  const restore = startTool(options.tools, 'pg_restore', ['--no-password', '-d', options.dbname, ...options.pgRestoreArgs], { stdin: 'pipe', stdout: 'inherit' });
  let streamError: unknown;
  try {
    await pipeline(Readable.from(payload, { objectMode: false }), restore.child.stdin!);
  } catch (err) {
    streamError = err;
    restore.child.stdin!.destroy();
  }
  const status = await restore.exited;
  // pg_restore's own failure explains a broken pipe better than the pipe does.
  if (status.code !== 0) throw toolFailure('pg_restore', status, restore.stderr());
  if (streamError) throw streamError instanceof WalshipError ? streamError : localFailure(`pg_restore's input`, streamError);
  log.info('dump restored', { name: manifest.name, file: file.file, dbname: options.dbname, bytes: file.size });
}

/** A database with any table, view, sequence, function or large object outside the system schemas is not empty. */
async function refuseNonEmptyDatabase(tools: PgTools, dbname: string): Promise<void> {
  const query = `SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%')
    + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema'))
    + (SELECT count(*) FROM pg_largeobject_metadata)`;
  const psql = startTool(tools, 'psql', ['--no-psqlrc', '--no-align', '--tuples-only', '--no-password', '-v', 'ON_ERROR_STOP=1', '-d', dbname, '-c', query], { stdin: 'ignore', stdout: 'pipe' });
  let out = '';
  psql.child.stdout!.setEncoding('utf8');
  psql.child.stdout!.on('data', (t: string) => (out += t));
  const status = await psql.exited;
  if (status.code !== 0) throw toolFailure('psql', status, psql.stderr());
  const objects = Number(out.trim());
  if (objects > 0) {
    throw refusedError(`database ${dbname} is not empty (${objects} objects); restore into a new empty database (createdb), or pass -- --clean to let pg_restore drop what the dump recreates`);
  }
}

async function refuseExisting(dest: string): Promise<void> {
  const info = await stat(dest).catch(() => undefined);
  if (info) throw refusedError(`${dest} already exists; walship does not overwrite it`);
}

function cannotWrite(path: string, err: NodeJS.ErrnoException): WalshipError {
  const reason =
    err.code === 'ENOENT' ? 'no such directory' : err.code === 'EACCES' || err.code === 'EPERM' ? 'permission denied' : err.code === 'ENOSPC' ? 'no space left on device' : err.code === 'EDQUOT' ? 'disk quota exceeded' : err.message;
  return usageError(`cannot write ${path}: ${reason}`);
}

/** Local write failures (disk full, I/O error) are the destination's; walship's own errors pass as they are. */
function localFailure(dest: string, err: unknown, cleaned = true): unknown {
  if (err instanceof WalshipError) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EIO' || code === 'EROFS' || code === 'EFBIG' || code === 'EPIPE') {
    return usageError(`cannot write ${dest}: ${cannotWrite(dest, err as NodeJS.ErrnoException).message.replace(/^cannot write [^:]*: /, '')}${cleaned ? '; nothing was left behind' : ''}`);
  }
  return err;
}
