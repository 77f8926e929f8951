import { createHash } from 'node:crypto';
import { chmod, mkdir, open, readdir, readFile, rename, rm, symlink, type FileHandle } from 'node:fs/promises';
import { isAbsolute, join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Encryption } from '../codec/codec.ts';
import { integrityError, refusedError, usageError, WalshipError } from '../errors.ts';
import { syncDirectory } from '../fsutil.ts';
import { log } from '../log.ts';
import { controlFilePath, parseControlFile } from '../pg/control-file.ts';
import { keys, readRepositoryInfo } from '../repository.ts';
import { isNotFound, type Storage } from '../storage/storage.ts';
import { resolveBackup } from './catalog.ts';
import { readManifest, unsafePath, type BackupManifest, type ManifestEntry } from './manifest.ts';
import { formatBytes, mibPerSecond, startProgress, type Progress } from './progress.ts';

export interface BackupFetchOptions {
  storage: Storage;
  encryption: Encryption | undefined;
  /** A backup name or LATEST. */
  backup: string;
  /** Empty (or absent) directory to lay the backup into. */
  target: string;
  /** Tablespace locations to move: old location → new location. */
  tablespaceMap?: ReadonlyMap<string, string>;
  downloadConcurrency: number;
  /** Already read by the caller (restore). */
  manifest?: BackupManifest;
}

/** Files restore writes from the manifest, never from a tar entry. */
const fromManifest = new Set(['backup_label', 'tablespace_map']);
const controlTemp = `${controlFilePath}.walship-partial`;

/**
 * Lay a base backup into an empty directory: every part downloaded, decoded and unpacked in
 * parallel, every file checked against its SHA-256 in the manifest, nothing outside the target
 * (and the tablespace locations) ever written. global/pg_control is put in place last, after
 * everything is verified and fsynced, so a failed fetch can never be started. On failure the
 * target is emptied again.
 */
export async function fetchBackup(options: BackupFetchOptions): Promise<BackupManifest> {
  const { storage } = options;
  const started = Date.now();
  const manifest = options.manifest ?? (await readManifest(storage, (await resolveBackup(storage, options.encryption, options.backup)).name, options.encryption));
  const repository = await readRepositoryInfo(storage);
  if (repository && repository.systemIdentifier !== manifest.systemIdentifier) {
    throw refusedError(
      `backup ${manifest.name} is of database system ${manifest.systemIdentifier}, but repository ${storage.location} belongs to ${repository.systemIdentifier}; refusing to restore a backup of another cluster`,
    );
  }
  const target = resolve(options.target);
  if (process.getuid?.() === 0) log.warn('running as root: the restored files will belong to root; PostgreSQL refuses to start on them until they are chowned to the server user (run walship as that user instead)');
  const tablespaces = planTablespaces(manifest, options.tablespaceMap ?? new Map());
  const createdRoot = await prepareEmptyDirectory(target, 'target directory');
  for (const t of tablespaces) t.created = await prepareEmptyDirectory(t.location, `tablespace ${t.oid} location`);

  const layout = new Layout(target, tablespaces);
  let progress: Progress | undefined;
  try {
    for (const dir of manifest.files.filter((f) => f.type === 'dir').sort((a, b) => a.path.length - b.path.length)) {
      const dest = layout.destination(dir.path);
      await mkdir(dest, { recursive: true, mode: 0o700 });
      await chmod(dest, 0o700);
    }
    progress = await startProgress(`fetch ${manifest.name}`, manifest.size);
    const extractor = new Extractor(options, manifest, layout, progress);
    await extractor.run();
    progress.stop();

    const missing = manifest.files.filter((f) => f.type === 'file' && !fromManifest.has(f.path) && !extractor.seen.has(f.path));
    if (missing.length > 0) {
      throw integrityError(`backup ${manifest.name}: ${missing.length} file(s) missing from their parts, e.g. ${missing[0]!.path} (part ${missing[0]!.part})`);
    }
    await checkControlFile(target, manifest);
    await syncAll(extractor.written);

    await writeDurable(join(target, 'backup_label'), manifest.backupLabel);
    if (manifest.tablespaceMap) await writeDurable(join(target, 'tablespace_map'), remapTablespaceMap(manifest.tablespaceMap, tablespaces));
    for (const link of manifest.files.filter((f) => f.type === 'symlink')) await symlink(link.target!, layout.destination(link.path));
    for (const t of tablespaces) await symlink(t.location, join(target, 'pg_tblspc', t.oid));
    const dirs = manifest.files.filter((f) => f.type === 'dir').map((f) => layout.destination(f.path));
    for (const dir of [...dirs.sort((a, b) => b.length - a.length), ...tablespaces.map((t) => t.location), target]) await syncDirectory(dir);
    await rename(join(target, controlTemp), join(target, controlFilePath));
    await syncDirectory(join(target, 'global'));
  } catch (err) {
    progress?.stop();
    await removeContents(target, createdRoot);
    for (const t of tablespaces) await removeContents(t.location, t.created);
    throw localWriteError(err, target);
  }
  const ms = Date.now() - started;
  log.info(`backup ${manifest.name} fetched into ${target}: ${formatBytes(manifest.size)} in ${(ms / 1000).toFixed(1)} s (${mibPerSecond(manifest.size, ms)} MiB/s), every file verified`);
  return manifest;
}

interface TablespacePlan {
  oid: string;
  original: string;
  location: string;
  created: boolean;
}

function planTablespaces(manifest: BackupManifest, mapping: ReadonlyMap<string, string>): TablespacePlan[] {
  const known = new Set(manifest.tablespaces.map((t) => t.location));
  for (const [from, to] of mapping) {
    if (!known.has(from)) {
      throw usageError(`--tablespace-map ${from}=${to}: backup ${manifest.name} has no tablespace at ${from} (it has: ${[...known].join(', ') || 'none'})`);
    }
    if (!isAbsolute(to)) throw usageError(`--tablespace-map ${from}=${to}: the new location must be an absolute path`);
  }
  return manifest.tablespaces.map((t) => ({ oid: t.oid, original: t.location, location: resolve(mapping.get(t.location) ?? t.location), created: false }));
}

/** Make sure `dir` is an empty directory (creating it, mode 0700, if absent). Returns whether it was created. */
async function prepareEmptyDirectory(dir: string, what: string): Promise<boolean> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      return true;
    }
    if (code === 'ENOTDIR') throw refusedError(`${what} ${dir} is not a directory`);
    throw usageError(`${what} ${dir}: ${(err as Error).message}`);
  }
  if (entries.length > 0) throw refusedError(`${what} ${dir} is not empty; backup-fetch and restore only write into an empty directory`);
  await chmod(dir, 0o700);
  return false;
}

async function removeContents(dir: string, removeDir: boolean): Promise<void> {
  try {
    if (removeDir) {
      await rm(dir, { recursive: true, force: true });
      return;
    }
    for (const name of await readdir(dir)) await rm(join(dir, name), { recursive: true, force: true });
  } catch (err) {
    log.warn('could not clean up after the failed fetch', { dir, reason: (err as Error).message });
  }
}

/** Where a backup path goes: tablespace content to its (possibly remapped) location, the rest under the target. */
class Layout {
  readonly #target: string;
  readonly #tablespaces: Map<string, string>;

  constructor(target: string, tablespaces: TablespacePlan[]) {
    this.#target = target;
    this.#tablespaces = new Map(tablespaces.map((t) => [t.oid, t.location]));
  }

  destination(path: string): string {
    const problem = unsafePath(path);
    if (problem) throw integrityError(`refusing ${JSON.stringify(path)}: ${problem}`);
    const m = /^pg_tblspc\/(\d+)\/(.+)$/.exec(path);
    const location = m ? this.#tablespaces.get(m[1]!) : undefined;
    const [root, rest] = location ? [location, m![2]!] : [this.#target, path];
    const dest = resolve(root, rest);
    if (!dest.startsWith(root + sep)) throw integrityError(`refusing ${JSON.stringify(path)}: it leaves the target directory`);
    return path === controlFilePath ? join(this.#target, controlTemp) : dest;
  }
}

interface TarEntryHeader {
  name: string;
  type: string | null;
  size?: number | null;
  linkname?: string | null;
}

class Extractor {
  readonly seen = new Set<string>();
  readonly written: string[] = [];
  readonly #o: BackupFetchOptions;
  readonly #manifest: BackupManifest;
  readonly #byPath: Map<string, ManifestEntry>;
  readonly #layout: Layout;
  readonly #progress: Progress;
  #failure: unknown;
  readonly #streams = new Set<Readable | NodeJS.WritableStream>();

  constructor(options: BackupFetchOptions, manifest: BackupManifest, layout: Layout, progress: Progress) {
    this.#o = options;
    this.#manifest = manifest;
    this.#byPath = new Map(manifest.files.map((f) => [f.path, f]));
    this.#layout = layout;
    this.#progress = progress;
  }

  async run(): Promise<void> {
    const queue = this.#manifest.parts.map((p) => p.number).sort((a, b) => a - b);
    const worker = async () => {
      for (let part = queue.shift(); part !== undefined && this.#failure === undefined; part = queue.shift()) {
        try {
          await this.#part(part);
        } catch (err) {
          if (this.#failure === undefined) {
            this.#failure = err;
            // With an error: a stream destroyed without one can leave its reader waiting forever.
            const aborted = new Error('aborted: another part failed');
            for (const stream of this.#streams) (stream as Readable).destroy?.(aborted);
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, this.#o.downloadConcurrency) }, worker));
    if (this.#failure !== undefined) throw this.#failure;
  }

  async #part(part: number): Promise<void> {
    const { storage } = this.#o;
    const key = keys.backupPart(this.#manifest.name, part);
    const what = `${storage.location}/${key}`;
    let object: Readable;
    try {
      object = await storage.get(key);
    } catch (err) {
      if (isNotFound(err)) throw integrityError(`backup ${this.#manifest.name} is damaged: part ${part} (${key}) is missing from ${storage.location}`);
      throw err;
    }
    if (this.#failure !== undefined) {
      object.destroy();
      return;
    }
    const { decodeObject } = await import('../codec/codec.ts');
    const { extract: makeExtract } = await import('tar-stream');
    const decoded = decodeObject(object, this.#o.encryption, what);
    const extract = makeExtract();
    this.#streams.add(object);
    this.#streams.add(decoded);
    this.#streams.add(extract);
    const piping = pipeline(decoded, extract);
    piping.catch(() => {});
    // Entries are pulled with next() only: leaving a for-await early would call the iterator's
    // return(), which waits for the extractor to close while the pipeline may still be feeding it.
    const entries = extract[Symbol.asyncIterator]();
    try {
      for (;;) {
        if (this.#failure !== undefined) throw this.#failure;
        const next = await entries.next();
        if (next.done) break;
        await this.#entry(next.value.header as TarEntryHeader, next.value as unknown as AsyncIterable<Buffer>, part, what);
      }
      await piping;
    } catch (err) {
      const reason = err instanceof Error ? err : new Error(String(err));
      extract.destroy(reason);
      decoded.destroy(reason);
      object.destroy();
      if (err instanceof WalshipError) throw err;
      // Local file system failures (disk full...) are not the part's fault.
      if ((err as NodeJS.ErrnoException).syscall !== undefined) throw err;
      if (this.#failure !== undefined) throw this.#failure;
      // tar-stream's own complaints (bad header, truncated archive) mean a corrupt part.
      throw integrityError(`${what}: not a valid backup part (${reason.message})`, err);
    } finally {
      this.#streams.delete(object);
      this.#streams.delete(decoded);
      this.#streams.delete(extract);
    }
  }

  async #entry(header: TarEntryHeader, data: AsyncIterable<Buffer>, part: number, what: string): Promise<void> {
    const name = header.type === 'directory' ? header.name.replace(/\/+$/, '') : header.name;
    const refuse = (why: string) => integrityError(`${what}: refusing tar entry ${JSON.stringify(header.name)}: ${why}`);
    const problem = unsafePath(name);
    if (problem) throw refuse(problem);
    const listed = this.#byPath.get(name);
    if (!listed) throw refuse('not in the backup manifest');
    const type = header.type === 'directory' ? 'dir' : header.type === 'symlink' ? 'symlink' : header.type === 'file' ? 'file' : undefined;
    if (!type) throw refuse(`entry type ${header.type} is not allowed in a backup`);
    if (type !== listed.type) throw refuse(`the manifest lists it as a ${listed.type}, the part holds a ${type}`);
    if (type === 'symlink') {
      // Links are created from the manifest (checked to stay inside the target) after all files.
      if (header.linkname !== listed.target) throw refuse(`link target ${JSON.stringify(header.linkname)} differs from the manifest`);
      await drain(data);
      return;
    }
    if (type === 'dir') {
      await drain(data);
      return;
    }
    if (listed.part !== part) throw refuse(`the manifest places it in part ${listed.part}`);
    if (this.seen.has(name)) throw refuse('it appears twice');
    this.seen.add(name);
    const expected = listed.size!;
    if ((header.size ?? 0) < expected) throw integrityError(`${what}: ${name} holds ${header.size} bytes, the manifest says ${expected}`);
    const hash = createHash('sha256');
    if (fromManifest.has(name)) {
      await each(data, (chunk) => void hash.update(chunk));
      const text = name === 'backup_label' ? this.#manifest.backupLabel : this.#manifest.tablespaceMap;
      if (hash.digest('hex') !== listed.sha256 || createHash('sha256').update(text).digest('hex') !== listed.sha256) {
        throw integrityError(`${what}: ${name} does not match the manifest (SHA-256 mismatch)`);
      }
      return;
    }
    const dest = this.#layout.destination(name);
    let handle: FileHandle;
    try {
      // O_EXCL: never write through something already there (including a link).
      handle = await open(dest, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw integrityError(`${what}: refusing tar entry ${JSON.stringify(name)}: ${dest} already exists`);
      throw err;
    }
    let remaining = expected;
    try {
      await each(data, async (chunk) => {
        const used = remaining >= chunk.length ? chunk : chunk.subarray(0, remaining);
        if (used.length > 0) {
          hash.update(used);
          await handle.write(used);
          remaining -= used.length;
          this.#progress.add(used.length);
        }
      });
    } finally {
      await handle.close();
    }
    this.written.push(dest);
    if (hash.digest('hex') !== listed.sha256) {
      throw integrityError(`backup ${this.#manifest.name}: ${name} (part ${part}) does not match its SHA-256 in the manifest; the backup is corrupt`);
    }
  }
}

/** Feed every chunk to `use`, pulling with next() only (see Extractor.#part); a failure is left to the caller, who destroys the extractor. */
async function each(data: AsyncIterable<Buffer>, use: (chunk: Buffer) => void | Promise<void>): Promise<void> {
  const chunks = data[Symbol.asyncIterator]();
  for (;;) {
    const next = await chunks.next();
    if (next.done) return;
    await use(next.value);
  }
}

const drain = (data: AsyncIterable<Buffer>) => each(data, () => {});

/** A failure of the local disk (full, read-only, permissions) as one clear line; walship's own errors pass unchanged. */
function localWriteError(err: unknown, target: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (err instanceof WalshipError || typeof code !== 'string') return err;
  const reasons: Record<string, string> = {
    ENOSPC: 'no space left on device',
    EDQUOT: 'disk quota exceeded',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    EIO: 'I/O error',
    EFBIG: 'file too large',
  };
  const path = (err as NodeJS.ErrnoException).path;
  return usageError(`cannot write ${path ?? target}: ${reasons[code] ?? (err as Error).message}; the target was emptied again`);
}

async function checkControlFile(target: string, manifest: BackupManifest): Promise<void> {
  const bytes = await readFile(join(target, controlTemp)).catch(() => undefined);
  if (!bytes) throw integrityError(`backup ${manifest.name}: ${controlFilePath} is missing`);
  const control = parseControlFile(bytes);
  if (!control || control.systemIdentifier.toString() !== manifest.systemIdentifier) {
    throw integrityError(`backup ${manifest.name}: ${controlFilePath} does not belong to database system ${manifest.systemIdentifier}`);
  }
}

async function syncAll(paths: string[]): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < paths.length) {
      const handle = await open(paths[next++]!, 'r');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
}

async function writeDurable(path: string, text: string): Promise<void> {
  const handle = await open(path, 'wx', 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * tablespace_map lines are "<oid> <path>", the path with '\', CR and LF backslash-escaped
 * (PostgreSQL 15+; earlier versions wrote paths as they are). Moved tablespaces get their new path.
 */
export function remapTablespaceMap(text: string, tablespaces: readonly { oid: string; original: string; location: string }[]): string {
  const moved = new Map(tablespaces.filter((t) => t.original !== t.location).map((t) => [t.oid, t.location]));
  if (moved.size === 0) return text;
  // Records end at an unescaped newline (an escaped one belongs to a path).
  const records: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\\' && i + 1 < text.length) current += c + text[++i];
    else if (c === '\n') {
      records.push(current);
      current = '';
    } else current += c;
  }
  const trailing = current;
  const remapped = records.map((record) => {
    const m = /^(\d+) /.exec(record);
    const to = m ? moved.get(m[1]!) : undefined;
    return to === undefined ? record : `${m![1]} ${to.replace(/[\\\r\n]/g, (c) => `\\${c}`)}`;
  });
  return `${remapped.map((r) => `${r}\n`).join('')}${trailing}`;
}

