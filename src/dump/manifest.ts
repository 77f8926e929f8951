import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { decodeObject, encodeObject, type EncodeOptions, type Encryption } from '../codec/codec.ts';
import { integrityError, usageError } from '../errors.ts';
import { keys } from '../repository.ts';
import { isNotFound, type Storage } from '../storage/storage.ts';

export const dumpManifestFormat = 1;

/** One stored payload of a dump. */
export interface DumpFile {
  /** Object name under dumps/<name>/: `dump`, `globals.sql`, `databases/0001.dump`. */
  file: string;
  /** `database`: pg_dump -Fc of one database; `globals`: pg_dumpall --globals-only (roles, tablespaces), plain SQL. */
  kind: 'database' | 'globals';
  /** The dumped database (kind database). */
  database?: string | undefined;
  format: 'custom' | 'plain';
  /** Payload bytes (what pg_dump wrote) and their SHA-256 (hex). */
  size: number;
  sha256: string;
  /** Bytes stored (after compression and encryption). */
  storedSize: number;
  serverVersion?: string | undefined;
  pgDumpVersion?: string | undefined;
}

/**
 * dumps/<name>/manifest.json, written last (its presence means the dump is complete), encoded like
 * every other object. No connection settings, host names or passwords: only what was dumped.
 */
export interface DumpManifest {
  format: number;
  name: string;
  /** `database`: one database (`dump-push --dbname`); `cluster`: globals + every database (`--all`). */
  kind: 'database' | 'cluster';
  /** The database (kind database); undefined for a cluster dump. */
  database?: string | undefined;
  /** When pg_dump started and when the last payload was stored (ISO 8601, UTC). */
  started: string;
  finished: string;
  serverVersion: string;
  pgDumpVersion: string;
  /** Total payload bytes and stored bytes over all files. */
  size: number;
  storedSize: number;
  /** SHA-256 of the payload (kind database: the one `dump` file). */
  sha256?: string | undefined;
  codec: { compression: EncodeOptions['compression']; level?: number | undefined; encrypted: boolean };
  files: DumpFile[];
  walshipVersion: string;
}

/** Dump names: `dump_<UTC time>_<database>` (one database) or `dumpall_<UTC time>` (--all). */
export function dumpName(time: Date, database: string | undefined, suffix = 0): string {
  const stamp = time.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const base = database === undefined ? `dumpall_${stamp}` : `dump_${stamp}_${safeName(database)}`;
  return suffix ? `${base}_${suffix}` : base;
}

/** A database name as a file/object name: ASCII letters, digits, `_ . -`, at most 63 characters. */
export function safeName(name: string): string {
  const cleaned = name.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^[.-]+/, '');
  return (cleaned || 'db').slice(0, 63);
}

const validName = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$/;

export function checkDumpName(name: string): string {
  if (!validName.test(name)) throw usageError(`'${name}' is not a dump name (see walship dump-list)`);
  return name;
}

export async function writeManifest(storage: Storage, manifest: DumpManifest, encode: EncodeOptions): Promise<void> {
  const body = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
  await storage.put(keys.dumpManifest(manifest.name), await encodeObject(Readable.from([body]), encode), { ifAbsent: true });
}

/** A dump's manifest, or undefined when the dump has none (in progress, failed, or absent). */
export async function readManifest(storage: Storage, name: string, encryption: Encryption | undefined): Promise<DumpManifest | undefined> {
  const key = keys.dumpManifest(name);
  let body: string;
  try {
    body = await text(decodeObject(await storage.get(key), encryption, `${storage.location}/${key}`));
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  return parseManifest(body, `${storage.location}/${key}`, name);
}

export function parseManifest(body: string, where: string, name: string): DumpManifest {
  let m: DumpManifest;
  try {
    m = JSON.parse(body) as DumpManifest;
  } catch (err) {
    throw integrityError(`${where}: not valid JSON (${(err as Error).message})`);
  }
  const bad = (what: string) => integrityError(`${where}: unreadable dump manifest (${what})`);
  if (typeof m !== 'object' || m === null) throw bad('not an object');
  if (m.format !== dumpManifestFormat) throw bad(`format ${String(m.format)}; this walship reads format ${dumpManifestFormat}`);
  if (m.name !== name) throw bad(`it names dump ${String(m.name)}`);
  if (m.kind !== 'database' && m.kind !== 'cluster') throw bad(`kind ${String(m.kind)}`);
  if (Number.isNaN(Date.parse(m.started)) || Number.isNaN(Date.parse(m.finished))) throw bad('no valid started/finished time');
  if (!Array.isArray(m.files) || m.files.length === 0) throw bad('no files');
  for (const f of m.files) {
    if (typeof f.file !== 'string' || !/^[A-Za-z0-9_./-]+$/.test(f.file) || f.file.split('/').some((p) => p === '..' || p === '' || p === '.')) {
      throw bad(`file name ${JSON.stringify(f.file)}`);
    }
    if (typeof f.size !== 'number' || typeof f.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(f.sha256)) throw bad(`size/sha256 of ${f.file}`);
  }
  return m;
}

/** The names under dumps/ and whether each has its manifest (incomplete ones have none). */
export async function scanDumps(storage: Storage): Promise<Map<string, { complete: boolean; modified: Date }>> {
  const found = new Map<string, { complete: boolean; modified: Date }>();
  for await (const object of storage.list(keys.dumpsPrefix)) {
    const rest = object.key.slice(keys.dumpsPrefix.length);
    const cut = rest.indexOf('/');
    if (cut <= 0) continue;
    const name = rest.slice(0, cut);
    const entry = found.get(name) ?? { complete: false, modified: object.modified };
    if (rest.slice(cut + 1) === 'manifest.json') entry.complete = true;
    if (object.modified > entry.modified) entry.modified = object.modified;
    found.set(name, entry);
  }
  return found;
}

/** Every complete dump's manifest, oldest first by the manifest's own times (started, then finished; not by name, not by storage dates). */
export async function listDumps(storage: Storage, encryption: Encryption | undefined): Promise<DumpManifest[]> {
  const manifests: DumpManifest[] = [];
  for (const [name, entry] of await scanDumps(storage)) {
    if (!entry.complete) continue;
    const m = await readManifest(storage, name, encryption);
    if (m) manifests.push(m);
  }
  return sortManifests(manifests);
}

export function sortManifests<T extends Pick<DumpManifest, 'name' | 'started' | 'finished'>>(manifests: T[]): T[] {
  return manifests.sort((a, b) => Date.parse(a.started) - Date.parse(b.started) || Date.parse(a.finished) - Date.parse(b.finished) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Does this dump hold `database` (its own, or a member of a cluster dump)? */
export function holdsDatabase(m: DumpManifest, database: string): boolean {
  return m.kind === 'database' ? m.database === database : m.files.some((f) => f.kind === 'database' && f.database === database);
}

/**
 * Resolve `name` or LATEST (the newest complete dump, optionally the newest holding `database`)
 * to its manifest. A missing dump is a usage error (exit 2) naming what was asked for.
 */
export async function resolveDump(storage: Storage, name: string, encryption: Encryption | undefined, database?: string): Promise<DumpManifest> {
  if (name === 'LATEST') {
    const all = (await listDumps(storage, encryption)).filter((m) => database === undefined || holdsDatabase(m, database));
    const latest = all.at(-1);
    if (!latest) throw usageError(`no complete dump${database === undefined ? '' : ` of database ${database}`} in ${storage.location}`);
    return latest;
  }
  const m = await readManifest(storage, checkDumpName(name), encryption);
  if (!m) throw usageError(`no complete dump named ${name} in ${storage.location} (see walship dump-list)`);
  return m;
}
