import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { decodeObject, encodeObject, type EncodeOptions, type Encryption } from '../codec/codec.ts';
import { integrityError, refusedError } from '../errors.ts';
import { keys } from '../repository.ts';
import { isNotFound, type Storage } from '../storage/storage.ts';

export const manifestFormat = 1;

/** One entry of a base backup. Files carry size (bytes actually read), SHA-256 and the part holding them. */
export interface ManifestEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  /** Seconds since the epoch. */
  mtime: number;
  size?: number;
  sha256?: string;
  part?: number;
  /** Symbolic links only: the link's target, relative, inside the data directory. */
  target?: string;
}

export interface ManifestPart {
  number: number;
  /** Uncompressed tar bytes. */
  size: number;
  /** Bytes stored (after compression and encryption). */
  storedSize: number;
  files: number;
}

export interface ChecksumFailure {
  path: string;
  block: number;
  expected: number;
  actual: number;
}

/** backups/<name>/manifest.json: written last; its presence means the backup is complete (DESIGN §3). */
export interface BackupManifest {
  format: number;
  name: string;
  walshipVersion: string;
  /** server_version_num, e.g. 170002. */
  pgVersion: number;
  pgMajor: number;
  systemIdentifier: string;
  timeline: number;
  startLsn: string;
  stopLsn: string;
  /** WAL segment holding the start (checkpoint redo) LSN and the one holding the end of the backup. */
  startWalFile: string;
  stopWalFile: string;
  startTime: string;
  stopTime: string;
  walSegmentSize: number;
  blockSize: number;
  dataChecksums: boolean;
  codec: { compression: string; level?: number | undefined; encrypted: boolean };
  permanent: boolean;
  label: string;
  /** backup_label as pg_backup_stop returned it, byte for byte. */
  backupLabel: string;
  /** tablespace_map as pg_backup_stop returned it ('' without tablespaces). */
  tablespaceMap: string;
  tablespaces: { oid: string; location: string }[];
  /** Uncompressed bytes of all files, and bytes stored for all parts. */
  size: number;
  storedSize: number;
  durationMs: number;
  verifyChecksums: boolean;
  checksumFailures: ChecksumFailure[];
  parts: ManifestPart[];
  files: ManifestEntry[];
}

/** The public, unencrypted facts backup-list shows (backups/<name>/summary.json): no paths, no label. */
export type BackupSummary = Pick<
  BackupManifest,
  | 'format'
  | 'name'
  | 'walshipVersion'
  | 'pgVersion'
  | 'pgMajor'
  | 'systemIdentifier'
  | 'timeline'
  | 'startLsn'
  | 'stopLsn'
  | 'startWalFile'
  | 'stopWalFile'
  | 'startTime'
  | 'stopTime'
  | 'walSegmentSize'
  | 'permanent'
  | 'size'
  | 'storedSize'
  | 'durationMs'
> & { parts: number; checksumFailures: number; encrypted: boolean; compression: string };

export function summaryOf(m: BackupManifest): BackupSummary {
  return {
    format: m.format,
    name: m.name,
    walshipVersion: m.walshipVersion,
    pgVersion: m.pgVersion,
    pgMajor: m.pgMajor,
    systemIdentifier: m.systemIdentifier,
    timeline: m.timeline,
    startLsn: m.startLsn,
    stopLsn: m.stopLsn,
    startWalFile: m.startWalFile,
    stopWalFile: m.stopWalFile,
    startTime: m.startTime,
    stopTime: m.stopTime,
    walSegmentSize: m.walSegmentSize,
    permanent: m.permanent,
    size: m.size,
    storedSize: m.storedSize,
    durationMs: m.durationMs,
    parts: m.parts.length,
    checksumFailures: m.checksumFailures.length,
    encrypted: m.codec.encrypted,
    compression: m.codec.compression,
  };
}

/** Backup names users can type and storage accepts: letters, digits, '_', '-', '.', not starting with '.'. */
export const validBackupName = (name: string) => /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(name) && name !== 'LATEST';

export async function writeManifest(storage: Storage, manifest: BackupManifest, encode: EncodeOptions): Promise<void> {
  const body = await encodeObject(Readable.from([Buffer.from(JSON.stringify(manifest))]), encode);
  await storage.put(keys.backupManifest(manifest.name), body, { ifAbsent: true });
}

export async function readManifest(storage: Storage, name: string, encryption: Encryption | undefined): Promise<BackupManifest> {
  const key = keys.backupManifest(name);
  let bytes: Buffer;
  try {
    bytes = await buffer(decodeObject(await storage.get(key), encryption, `${storage.location}/${key}`));
  } catch (err) {
    if (isNotFound(err)) throw refusedError(`no complete backup named ${name} in ${storage.location} (backup-list shows the backups)`);
    throw err;
  }
  let manifest: BackupManifest;
  try {
    manifest = JSON.parse(bytes.toString('utf8')) as BackupManifest;
  } catch (err) {
    throw integrityError(`${storage.location}/${key}: not valid JSON (${(err as Error).message})`);
  }
  checkManifest(manifest, `${storage.location}/${key}`);
  return manifest;
}

/**
 * A manifest drives file creation on restore, so it is checked like untrusted input: every path
 * relative and normalized, no '..', links staying inside the data directory, parts that exist.
 */
export function checkManifest(m: BackupManifest, where: string): void {
  const fail = (why: string) => {
    throw integrityError(`${where}: invalid manifest: ${why}`);
  };
  if (typeof m !== 'object' || m === null) fail('not an object');
  if (m.format !== manifestFormat) fail(`format ${m.format} is not supported by this walship (expects ${manifestFormat})`);
  if (!Array.isArray(m.files) || !Array.isArray(m.parts) || !Array.isArray(m.tablespaces)) fail('files, parts or tablespaces missing');
  if (typeof m.backupLabel !== 'string' || typeof m.tablespaceMap !== 'string') fail('backup_label or tablespace_map missing');
  if (!/^\d+$/.test(String(m.systemIdentifier))) fail('bad system identifier');
  const parts = new Set<number>();
  for (const p of m.parts) {
    if (!Number.isInteger(p.number) || p.number < 1 || p.number > 9999 || parts.has(p.number)) fail(`bad part number ${p.number}`);
    parts.add(p.number);
  }
  const seen = new Set<string>();
  for (const t of m.tablespaces) {
    if (!/^\d+$/.test(t.oid) || typeof t.location !== 'string' || !t.location.startsWith('/')) fail(`bad tablespace ${JSON.stringify(t)}`);
  }
  for (const f of m.files) {
    const problem = unsafePath(f.path);
    if (problem) fail(`${JSON.stringify(f.path)}: ${problem}`);
    if (seen.has(f.path)) fail(`${f.path} listed twice`);
    seen.add(f.path);
    if (f.type === 'file') {
      if (!Number.isSafeInteger(f.size) || f.size! < 0 || !/^[0-9a-f]{64}$/.test(f.sha256 ?? '') || !parts.has(f.part!)) fail(`${f.path}: bad size, sha256 or part`);
    } else if (f.type === 'symlink') {
      if (typeof f.target !== 'string' || f.target.startsWith('/') || escapes(f.path, f.target)) fail(`${f.path}: link target ${JSON.stringify(f.target)} leaves the data directory`);
    } else if (f.type !== 'dir') {
      fail(`${f.path}: unknown type ${String(f.type)}`);
    }
  }
}

/** Why a relative path from a tar entry or manifest is unsafe, or undefined when it is fine. */
export function unsafePath(path: string): string | undefined {
  if (typeof path !== 'string' || path === '') return 'empty path';
  if (path.startsWith('/')) return 'absolute path';
  if (path.includes('\0')) return 'NUL in path';
  const parts = path.split('/');
  if (parts.some((p) => p === '..')) return "path contains '..'";
  if (parts.some((p) => p === '' || p === '.')) return 'path is not normalized';
  return undefined;
}

/** Does a link at `linkPath` with relative `target` point outside the root? */
function escapes(linkPath: string, target: string): boolean {
  const stack = linkPath.split('/').slice(0, -1);
  for (const part of target.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (stack.length === 0) return true;
      stack.pop();
    } else stack.push(part);
  }
  return false;
}
