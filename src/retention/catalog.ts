/**
 * The backups as retention, wal-verify and status see them: complete backups (listBackups, from
 * their manifests or summaries) with permanence from backup-mark's marks, the incomplete ones
 * (objects under backups/<name>/ without manifest.json), and the stored bytes of each.
 */
import { buffer } from 'node:stream/consumers';
import { listBackups } from '../backup/catalog.ts';
import type { BackupSummary } from '../backup/manifest.ts';
import { decodeObject, type Encryption } from '../codec/codec.ts';
import { integrityError } from '../errors.ts';
import { parseLsn } from '../pg/wal-names.ts';
import { keys } from '../repository.ts';
import { isNotFound, type Storage } from '../storage/storage.ts';
import type { BackupDescriptor, IncompleteBackup } from './plan.ts';

/** backups/<name>/mark.json */
export interface BackupMark {
  permanent: boolean;
  /** When it was set (ISO 8601). */
  updated: string;
}

export interface BackupObjects {
  name: string;
  keys: string[];
  bytes: number;
  modified: Date;
  hasManifest: boolean;
  hasMark: boolean;
  /** `delete` had started removing it (tombstone). */
  deleting: boolean;
}

export interface BackupCatalog {
  /** Complete backups, permanence resolved (mark wins over the manifest's flag). */
  backups: BackupDescriptor[];
  summaries: Map<string, BackupSummary>;
  incomplete: IncompleteBackup[];
  /** Every backup directory's objects, by backup name. */
  objects: Map<string, BackupObjects>;
  /** wal_segment_size as the backups record it (undefined without backups). */
  segmentSize: number | undefined;
}

/** One listing of backups/, grouped per backup name. */
export async function listBackupObjects(storage: Storage): Promise<Map<string, BackupObjects>> {
  const byName = new Map<string, BackupObjects>();
  for await (const object of storage.list(keys.backupsPrefix)) {
    const rest = object.key.slice(keys.backupsPrefix.length);
    const cut = rest.indexOf('/');
    if (cut <= 0) continue;
    const name = rest.slice(0, cut);
    let entry = byName.get(name);
    if (!entry) byName.set(name, (entry = { name, keys: [], bytes: 0, modified: new Date(0), hasManifest: false, hasMark: false, deleting: false }));
    entry.keys.push(object.key);
    entry.bytes += object.size;
    if (object.modified > entry.modified) entry.modified = object.modified;
    const file = rest.slice(cut + 1);
    if (file === 'manifest.json') entry.hasManifest = true;
    if (object.key === keys.backupMark(name)) entry.hasMark = true;
    if (object.key === keys.backupDeleting(name)) entry.deleting = true;
  }
  return byName;
}

export async function readMark(storage: Storage, name: string, encryption?: Encryption | undefined): Promise<BackupMark | undefined> {
  const key = keys.backupMark(name);
  let body: Buffer;
  try {
    body = await buffer(decodeObject(await storage.get(key), encryption, `${storage.location}/${key}`));
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  try {
    const mark = JSON.parse(body.toString('utf8')) as BackupMark;
    if (typeof mark.permanent !== 'boolean') throw new Error('no "permanent" boolean');
    return mark;
  } catch (err) {
    throw integrityError(`${storage.location}/${key}: unreadable mark (${(err as Error).message})`);
  }
}

/** Pin or unpin: one small object, written whole (no rewrite of the backup's manifest or parts). */
export async function writeMark(storage: Storage, name: string, permanent: boolean, now = new Date()): Promise<void> {
  const mark: BackupMark = { permanent, updated: now.toISOString() };
  await storage.put(keys.backupMark(name), Buffer.from(`${JSON.stringify(mark)}\n`));
}

/** Backup summaries with backup-mark's marks applied (for backup-list and anything showing permanence). */
export async function applyMarks(storage: Storage, summaries: readonly BackupSummary[], objects?: Map<string, BackupObjects>): Promise<BackupSummary[]> {
  const result: BackupSummary[] = [];
  for (const s of summaries) {
    const hasMark = objects ? objects.get(s.name)?.hasMark : true;
    const mark = hasMark ? await readMark(storage, s.name) : undefined;
    result.push(mark ? { ...s, permanent: mark.permanent } : s);
  }
  return result;
}

export function describeBackup(s: BackupSummary, bytes: number): BackupDescriptor {
  return {
    name: s.name,
    timeline: s.timeline,
    startLsn: parseLsn(s.startLsn),
    stopLsn: parseLsn(s.stopLsn),
    startTime: new Date(s.startTime),
    stopTime: new Date(s.stopTime),
    permanent: s.permanent,
    parent: (s as { parent?: string }).parent,
    bytes,
  };
}

/** Everything retention needs to know about backups; an unreadable manifest or mark stops it (never guessed). */
export async function loadBackupCatalog(storage: Storage, encryption: Encryption | undefined): Promise<BackupCatalog> {
  const objects = await listBackupObjects(storage);
  const listed = await applyMarks(storage, await listBackups(storage, encryption), objects);
  const summaries = new Map(listed.map((s) => [s.name, s]));
  const backups = listed.map((s) => describeBackup(s, objects.get(s.name)?.bytes ?? s.storedSize));
  const incomplete: IncompleteBackup[] = [];
  for (const entry of objects.values()) {
    if (summaries.has(entry.name) || entry.hasManifest) continue;
    const mark = entry.hasMark ? await readMark(storage, entry.name).catch(() => undefined) : undefined;
    incomplete.push({ name: entry.name, modified: entry.modified, bytes: entry.bytes, objects: entry.keys.length, permanentMark: mark?.permanent, deleting: entry.deleting });
  }
  const segmentSize = listed.find((s) => Number.isInteger(s.walSegmentSize))?.walSegmentSize;
  return { backups, summaries, incomplete, objects, segmentSize };
}
