import type { Dirent, Stats } from 'node:fs';
import { lstat, readdir, readlink, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { log } from '../log.ts';
import { emptiedDirectories, isDatabaseDirectory, isSkippedAnywhere, keptWalSubdirectories, skippedRelationFiles, skippedTopFiles } from './exclusions.ts';

/** One thing to put in a base backup: `path` is its name in the backup, `source` where it is read from. */
export interface WalkEntry {
  path: string;
  source: string;
  type: 'file' | 'dir';
  mode: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** Size when walked (the file may change while it is read). */
  size: number;
}

export interface Tablespace {
  oid: string;
  /** The directory pg_tblspc/<oid> links to. */
  location: string;
}

export interface WalkResult {
  entries: WalkEntry[];
  tablespaces: Tablespace[];
}

export interface WalkOptions {
  /** Tablespace subdirectory of this server (PG_<major>_<catversion>): only it is copied from a tablespace. */
  tablespaceVersionDirectory: string;
}

const isVanished = (err: unknown) => {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
};

/**
 * List the data directory and its tablespaces for a base backup, applying DESIGN §4's exclusions.
 * Directories come before their contents. Entries that vanish while walking are skipped.
 * pg_tblspc/<oid> links become tablespaces (their content listed under pg_tblspc/<oid>/...);
 * pg_wal is recorded as a directory even when it is a link; other links are followed.
 */
export async function walkDataDirectory(pgdata: string, options: WalkOptions): Promise<WalkResult> {
  const entries: WalkEntry[] = [];
  const tablespaces: Tablespace[] = [];
  const root = resolve(pgdata);

  const add = (path: string, source: string, info: Stats, type: 'file' | 'dir') =>
    entries.push({ path, source, type, mode: info.mode & 0o7777, mtime: Math.floor(info.mtimeMs / 1000), size: type === 'file' ? info.size : 0 });

  async function list(dir: string): Promise<Dirent[] | undefined> {
    try {
      return (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    } catch (err) {
      if (isVanished(err)) return undefined;
      throw err;
    }
  }

  /** lstat, following links other than the ones handled specially; undefined if gone. */
  async function info(source: string, follow: boolean): Promise<Stats | undefined> {
    try {
      return follow ? await stat(source) : await lstat(source);
    } catch (err) {
      if (isVanished(err)) return undefined;
      throw err;
    }
  }

  async function walk(dirSource: string, dirPath: string, depth: number): Promise<void> {
    if (depth > 64) throw new Error(`${dirSource}: directories nested too deep (a symbolic link loop?)`);
    const children = await list(dirSource);
    if (!children) return;
    const skippedRelations = isDatabaseDirectory(dirPath) ? skippedRelationFiles(children.map((c) => c.name)) : undefined;
    for (const child of children) {
      const name = child.name;
      const path = dirPath ? `${dirPath}/${name}` : name;
      const source = join(dirSource, name);
      if (isSkippedAnywhere(name) || skippedRelations?.has(name)) continue;
      if (dirPath === '' && skippedTopFiles.has(name)) continue;
      if (dirPath === 'pg_tblspc' && child.isSymbolicLink()) {
        await addTablespace(name, source);
        continue;
      }
      let st = await info(source, false);
      if (!st) continue;
      if (st.isSymbolicLink()) {
        if (dirPath === '' && name === 'pg_wal') {
          st = await info(source, true);
          if (!st) continue;
          add(path, source, st, 'dir');
          await addKeptWalSubdirectories(source);
          continue;
        }
        log.debug('following symbolic link in the data directory', { path, target: await readlink(source).catch(() => '?') });
        st = await info(source, true);
        if (!st) continue;
      }
      if (st.isDirectory()) {
        add(path, source, st, 'dir');
        if (dirPath === '' && emptiedDirectories.has(name)) {
          if (name === 'pg_wal') await addKeptWalSubdirectories(source);
          continue;
        }
        await walk(source, path, depth + 1);
      } else if (st.isFile()) {
        add(path, source, st, 'file');
      } else {
        log.debug('skipping special file', { path });
      }
    }
  }

  async function addKeptWalSubdirectories(source: string): Promise<void> {
    for (const sub of (await list(source)) ?? []) {
      if (!keptWalSubdirectories.has(sub.name)) continue;
      const st = await info(join(source, sub.name), true);
      if (st?.isDirectory()) add(`pg_wal/${sub.name}`, join(source, sub.name), st, 'dir');
    }
  }

  async function addTablespace(oid: string, link: string): Promise<void> {
    if (!/^\d+$/.test(oid)) {
      log.warn('skipping unexpected link in pg_tblspc', { name: oid });
      return;
    }
    const target = await readlink(link).catch((err) => {
      if (isVanished(err)) return undefined;
      throw err;
    });
    if (target === undefined) return; // tablespace dropped while walking
    const location = isAbsolute(target) ? target : resolve(join(root, 'pg_tblspc'), target);
    tablespaces.push({ oid, location });
    const versionDir = join(location, options.tablespaceVersionDirectory);
    const st = await info(versionDir, true);
    if (!st?.isDirectory()) return;
    const path = `pg_tblspc/${oid}/${options.tablespaceVersionDirectory}`;
    add(path, versionDir, st, 'dir');
    await walk(versionDir, path, 1);
  }

  const top = await info(root, true);
  if (!top?.isDirectory()) throw new Error(`${root}: not a directory`);
  await walk(root, '', 0);
  return { entries, tablespaces };
}
