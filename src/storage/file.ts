import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdir, open, readdir, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { Readable } from 'node:stream';
import { storageError, WalshipError } from '../errors.ts';
import { syncDirectory } from '../fsutil.ts';
import { ObjectExistsError, ObjectNotFoundError, type ObjectInfo, type PutOptions, type Storage } from './storage.ts';

/** Temporary files start with this; listings skip them and `delete garbage` may remove stale ones. */
export const tempPrefix = '.tmp.';

/**
 * A repository in a local (or mounted) directory. Durability as PostgreSQL itself does it:
 * write a temp file, fsync it, link (conditional) or rename it into place, fsync the directory.
 */
export class FileStorage implements Storage {
  readonly location: string;
  readonly root: string;

  #rootChecked: Promise<void> | undefined;

  constructor(root: string) {
    this.root = root;
    this.location = `file://${root}`;
  }

  /**
   * The repository directory must already exist: walship never creates it. If it is a mount point
   * that is not mounted, creating it would fill the local disk, and reading from it would answer
   * "no such WAL file", which ends PostgreSQL's recovery early.
   */
  #checkRoot(): Promise<void> {
    this.#rootChecked ??= stat(this.root).then(
      (info) => {
        if (!info.isDirectory()) throw storageError(`storage ${this.location}: ${this.root} is not a directory`);
      },
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') {
          throw storageError(`storage ${this.location}: repository directory ${this.root} does not exist (not mounted? create it first: mkdir -p ${this.root})`);
        }
        throw this.#fail('open repository', this.root, err);
      },
    );
    return this.#rootChecked;
  }

  #path(key: string): string {
    if (key.startsWith('/') || key.split('/').some((part) => part === '..' || part === '.' || part === '')) {
      throw new Error(`invalid object key '${key}'`);
    }
    return join(this.root, key);
  }

  async put(key: string, body: Readable | Buffer, options: PutOptions = {}): Promise<void> {
    const target = this.#path(key);
    const dir = dirname(target);
    await this.#checkRoot();
    await this.#io('create directory', dir, () => mkdir(dir, { recursive: true, mode: 0o750 }));
    const temp = join(dir, `${tempPrefix}${key.split('/').pop()}.${process.pid}.${randomBytes(4).toString('hex')}`);
    try {
      // Only the file system's failures are storage errors; a failing body keeps its own error.
      const handle = await this.#io('create', temp, () => open(temp, 'wx', 0o640));
      try {
        if (Buffer.isBuffer(body)) await this.#io('write', temp, () => handle.writeFile(body));
        else for await (const chunk of body) await this.#io('write', temp, () => handle.write(chunk as Buffer));
        await this.#io('fsync', temp, () => handle.sync());
      } finally {
        await handle.close();
      }
      if (options.ifAbsent) {
        // link() fails with EEXIST if the name is taken: an atomic create-if-absent on POSIX filesystems.
        try {
          await link(temp, target);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new ObjectExistsError(key, this.location);
          throw this.#fail('link', target, err);
        }
      } else {
        await this.#io('rename', target, () => rename(temp, target));
      }
      await this.#syncDir(dir);
    } finally {
      await unlink(temp).catch(() => {});
    }
  }

  async get(key: string): Promise<Readable> {
    const path = this.#path(key);
    await this.#checkRoot();
    let handle;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new ObjectNotFoundError(key, this.location);
      throw this.#fail('read', path, err);
    }
    return createReadStream('', { fd: handle, highWaterMark: 1 << 20 });
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const path = this.#path(key);
    await this.#checkRoot();
    try {
      const info = await stat(path);
      return info.isFile() ? { key, size: info.size, modified: info.mtime } : undefined;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw this.#fail('stat', path, err);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    // Walk only the directory the prefix points into; names are filtered by the prefix's last part.
    const cut = prefix.lastIndexOf('/');
    const dirKey = cut >= 0 ? prefix.slice(0, cut) : '';
    await this.#checkRoot();
    yield* this.#walk(dirKey, prefix);
  }

  async *#walk(dirKey: string, prefix: string): AsyncGenerator<ObjectInfo> {
    const dir = dirKey ? join(this.root, ...dirKey.split('/')) : this.root;
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw this.#fail('list', dir, err);
    }
    // Key order: a directory's keys continue with '/', so 'a-c' and 'a.txt' come before 'a/b'.
    const sortName = (entry: { name: string; isDirectory(): boolean }) => (entry.isDirectory() ? `${entry.name}/` : entry.name);
    entries.sort((a, b) => (sortName(a) < sortName(b) ? -1 : sortName(a) > sortName(b) ? 1 : 0));
    for (const entry of entries) {
      if (entry.name.startsWith(tempPrefix)) continue;
      const key = dirKey ? `${dirKey}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (`${key}/`.startsWith(prefix) || prefix.startsWith(`${key}/`)) yield* this.#walk(key, prefix);
      } else if (entry.isFile() && key.startsWith(prefix)) {
        const info = await stat(join(dir, entry.name)).catch(() => undefined);
        if (info) yield { key, size: info.size, modified: info.mtime };
      }
    }
  }

  async delete(keys: readonly string[]): Promise<void> {
    await this.#checkRoot();
    const dirs = new Set<string>();
    for (const key of keys) {
      const path = this.#path(key);
      try {
        await unlink(path);
        dirs.add(dirname(path));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw this.#fail('delete', path, err);
      }
    }
    // Sync every touched directory before pruning any: pruning one may remove another (parts/ and its parent).
    for (const dir of dirs) await this.#syncDir(dir);
    for (const dir of dirs) await this.#pruneEmpty(dir);
  }

  /** Remove directories emptied by a delete, up to the repository root. */
  async #pruneEmpty(dir: string): Promise<void> {
    while (dir.startsWith(this.root + sep) && dir !== this.root) {
      try {
        await rmdir(dir);
      } catch {
        return;
      }
      dir = dirname(dir);
    }
  }

  async #syncDir(dir: string): Promise<void> {
    await this.#io('fsync directory', dir, () => syncDirectory(dir));
  }

  async #io<T>(action: string, path: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      throw this.#fail(action, path, err);
    }
  }

  #fail(action: string, path: string, err: unknown) {
    if (err instanceof WalshipError) return err;
    const code = (err as NodeJS.ErrnoException).code;
    const reason =
      code === 'EACCES' || code === 'EPERM'
        ? 'permission denied'
        : code === 'EROFS'
          ? 'read-only file system'
          : code === 'ENOSPC'
            ? 'no space left on device'
            : code === 'ENOENT'
              ? 'no such file or directory'
              : (err as Error).message;
    return storageError(`storage ${this.location}: cannot ${action} ${path}: ${reason}`, err);
  }
}
