/**
 * Carry out a retention plan in an order that is safe against kill -9 at any point:
 *
 * 1. Backups, oldest first: a tombstone (backups/<name>/deleting), then the manifest: from that
 *    moment the backup is "incomplete" (no listing, restore or LATEST sees it) and its remaining
 *    objects are garbage that the next `delete` removes at once (the tombstone tells them from a
 *    backup-push in progress); never a listed backup with missing parts. The tombstone goes last.
 * 2. Incomplete backups past the safety age.
 * 3. WAL, in ascending segment order, only after every backup that needed it is gone, and only
 *    WAL below the floor of the backups that stay: an interruption leaves the oldest WAL missing,
 *    never a hole inside what a kept backup needs, so wal-verify and restore still accept it.
 * 4. Stale temporary files.
 *
 * Before each backup goes, its mark is read again: a backup pinned by backup-mark after the plan
 * was made is skipped, and then no WAL is deleted in this run.
 */
import { unlink } from 'node:fs/promises';
import { log } from '../log.ts';
import { keys } from '../repository.ts';
import type { Storage } from '../storage/storage.ts';
import { readMark } from './catalog.ts';
import type { RetentionPlan } from './plan.ts';

export interface ExecuteResult {
  backups: number;
  incomplete: number;
  wal: number;
  temp: number;
  objects: number;
  bytes: number;
  skipped: string[];
}

/** Storage batch size (S3 DeleteObjects takes at most 1000 keys). */
const defaultBatchSize = 1000;

export async function executePlan(
  storage: Storage,
  plan: RetentionPlan,
  hooks: { afterDelete?: (what: string) => void; batchSize?: number } = {},
): Promise<ExecuteResult> {
  const batchSize = hooks.batchSize ?? defaultBatchSize;
  const result: ExecuteResult = { backups: 0, incomplete: 0, wal: 0, temp: 0, objects: 0, bytes: 0, skipped: [] };
  const remove = async (list: string[]) => {
    for (let i = 0; i < list.length; i += batchSize) {
      await storage.delete(list.slice(i, i + batchSize));
      result.objects += Math.min(batchSize, list.length - i);
    }
  };

  for (const { backup } of plan.delete) {
    const mark = await readMark(storage, backup.name);
    if (mark?.permanent) {
      log.warn('backup was marked permanent after the plan was made: kept, and no WAL is deleted in this run', { backup: backup.name });
      result.skipped.push(backup.name);
      continue;
    }
    await storage.put(keys.backupDeleting(backup.name), Buffer.from(`${new Date().toISOString()}\n`));
    await storage.delete([keys.backupManifest(backup.name)]);
    hooks.afterDelete?.(`manifest ${backup.name}`);
    const tombstone = keys.backupDeleting(backup.name);
    await remove((await listKeys(storage, keys.backupPrefix(backup.name))).filter((k) => k !== tombstone));
    hooks.afterDelete?.(`objects ${backup.name}`);
    await storage.delete([tombstone]);
    result.backups++;
    result.objects++;
    result.bytes += backup.bytes;
    log.info('backup deleted', { backup: backup.name });
    hooks.afterDelete?.(`backup ${backup.name}`);
  }

  for (const { backup } of plan.deleteIncomplete) {
    const rest = await listKeys(storage, keys.backupPrefix(backup.name));
    if (rest.includes(keys.backupManifest(backup.name))) {
      log.warn('incomplete backup got its manifest meanwhile: kept', { backup: backup.name });
      result.skipped.push(backup.name);
      continue;
    }
    // The tombstone (if any) last, so an interruption here still leaves it marked as deleting.
    const tombstone = keys.backupDeleting(backup.name);
    await remove(rest.filter((k) => k !== tombstone));
    if (rest.includes(tombstone)) await remove([tombstone]);
    result.incomplete++;
    result.bytes += backup.bytes;
    log.info('incomplete backup deleted', { backup: backup.name, objects: rest.length });
    hooks.afterDelete?.(`incomplete ${backup.name}`);
  }

  if (result.skipped.length === 0) {
    const wal = plan.wal.delete;
    for (let i = 0; i < wal.length; i += batchSize) {
      const batch = wal.slice(i, i + batchSize);
      await storage.delete(batch.map((w) => w.key));
      result.objects += batch.length;
      result.wal += batch.length;
      result.bytes += batch.reduce((s, w) => s + w.size, 0);
      hooks.afterDelete?.(`wal ${batch.at(-1)!.name}`);
    }
    if (wal.length) log.info('WAL deleted', { files: wal.length, first: wal[0]!.name, last: wal.at(-1)!.name });
  }

  for (const t of plan.deleteTemp) {
    try {
      await unlink(t.path);
      result.temp++;
      result.bytes += t.size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn('cannot remove temporary file', { path: t.path, reason: (err as Error).message });
    }
  }
  return result;
}

async function listKeys(storage: Storage, prefix: string): Promise<string[]> {
  const list: string[] = [];
  for await (const object of storage.list(prefix)) list.push(object.key);
  return list;
}

/** Leftover temporary files of interrupted writes under a file:// repository root ('.tmp.' prefix, see storage/file.ts). */
export async function findTempFiles(root: string): Promise<{ path: string; size: number; modified: Date }[]> {
  const { readdir, lstat } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const { tempPrefix } = await import('../storage/file.ts');
  const found: { path: string; size: number; modified: Date }[] = [];
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile() && entry.name.startsWith(tempPrefix)) {
        const info = await lstat(path).catch(() => undefined);
        if (info) found.push({ path, size: info.size, modified: info.mtime });
      }
    }
  };
  await walk(root);
  return found;
}
