import { text } from 'node:stream/consumers';
import type { Encryption } from '../codec/codec.ts';
import { refusedError } from '../errors.ts';
import { log } from '../log.ts';
import { parseLsn } from '../pg/wal-names.ts';
import { keys } from '../repository.ts';
import { isNotFound, type Storage } from '../storage/storage.ts';
import { readManifest, summaryOf, type BackupSummary } from './manifest.ts';
import { forEachConcurrently } from '../pool.ts';

/**
 * The complete backups of a repository, oldest first (by start LSN, then name). A backup is
 * complete when its manifest exists; parts without a manifest (an interrupted backup-push) are
 * not a backup. Listing reads each backup's small unencrypted summary, falling back to the
 * manifest (which needs the identity when the repository is encrypted).
 */
export async function listBackups(storage: Storage, encryption: Encryption | undefined): Promise<BackupSummary[]> {
  const complete = new Set<string>();
  const summaries = new Set<string>();
  for await (const object of storage.list(keys.backupsPrefix)) {
    const rest = object.key.slice(keys.backupsPrefix.length);
    const cut = rest.indexOf('/');
    if (cut <= 0) continue;
    const name = rest.slice(0, cut);
    const file = rest.slice(cut + 1);
    if (file === 'manifest.json') complete.add(name);
    else if (file === 'summary.json') summaries.add(name);
  }
  // A few reads at a time: one small GET per backup.
  const names = [...complete];
  const result: BackupSummary[] = [];
  await forEachConcurrently(names, 8, async (name) => {
    let summary: BackupSummary | undefined;
    if (summaries.has(name)) summary = await readSummary(storage, name);
    summary ??= summaryOf(await readManifest(storage, name, encryption));
    result.push(summary);
  });
  return result.sort(byStart);
}

const byStart = (a: BackupSummary, b: BackupSummary) => {
  const d = parseLsn(a.startLsn) - parseLsn(b.startLsn);
  return d < 0n ? -1 : d > 0n ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
};

async function readSummary(storage: Storage, name: string): Promise<BackupSummary | undefined> {
  try {
    const summary = JSON.parse(await text(await storage.get(keys.backupSummary(name)))) as BackupSummary;
    if (summary.name !== name || typeof summary.startLsn !== 'string') throw new Error('unexpected content');
    return summary;
  } catch (err) {
    if (!isNotFound(err)) log.warn('unreadable backup summary, reading the manifest instead', { backup: name, reason: (err as Error).message });
    return undefined;
  }
}

/** A backup by name, or the newest one for LATEST; refuses (exit 3) when there is none. */
export async function resolveBackup(storage: Storage, encryption: Encryption | undefined, name: string): Promise<BackupSummary> {
  const backups = await listBackups(storage, encryption);
  if (name === 'LATEST') {
    const latest = backups.at(-1);
    if (!latest) throw refusedError(`no complete backup in ${storage.location}`);
    return latest;
  }
  const found = backups.find((b) => b.name === name);
  if (!found) throw refusedError(`no complete backup named ${name} in ${storage.location} (backup-list shows the backups)`);
  return found;
}
