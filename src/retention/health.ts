/**
 * `walship check` (is this set up right?) and `walship status` (how healthy is it now?), as data:
 * the commands only print these reports, as text or JSON.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { buffer } from 'node:stream/consumers';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Encryption } from '../codec/codec.ts';
import { ExitCode, oneLine, WalshipError, type ExitCodeValue } from '../errors.ts';
import type { ConnectionSettings } from '../pg/session.ts';
import { parseWalFileName, segmentNumber } from '../pg/wal-names.ts';
import { keys, readRepositoryInfo, type RepositoryInfo } from '../repository.ts';
import type { Storage } from '../storage/storage.ts';
import { compareBackups } from './plan.ts';
import { archiveCommandProblem, ClusterProbe, type ClusterFacts } from './cluster.ts';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skipped';

export interface CheckResult {
  name: string;
  status: CheckStatus;
  detail: string;
  /** Exit code this failure means (fail only). */
  exitCode?: ExitCodeValue | undefined;
}

export interface CheckReport {
  ok: boolean;
  exitCode: number;
  checks: CheckResult[];
}

export interface CheckOptions {
  storage: Storage;
  configDescription: string;
  connection: ConnectionSettings;
  /** Skip everything about the cluster (a monitoring host without PostgreSQL). */
  cluster: boolean;
  switchWal: boolean;
  switchWalTimeoutMs: number;
}

/** The probe object's key: outside wal/, backups/ and dumps/, so no listing ever sees it. */
export const probeKey = () => `check/probe-${hostname().replace(/[^A-Za-z0-9_.-]/g, '_')}-${process.pid}-${randomBytes(4).toString('hex')}`;

export async function runCheck(options: CheckOptions): Promise<CheckReport> {
  const checks: CheckResult[] = [];
  const add = (name: string, status: CheckStatus, detail: string, exitCode?: ExitCodeValue) => {
    checks.push({ name, status, detail, ...(status === 'fail' ? { exitCode } : {}) });
  };
  const { storage } = options;
  add('configuration', 'ok', options.configDescription);

  // Storage: write, read back, delete a probe object.
  let storageOk = false;
  const started = Date.now();
  const key = probeKey();
  try {
    const body = Buffer.from(`walship check ${new Date().toISOString()}\n`);
    await storage.put(key, body, { ifAbsent: true });
    const back = await buffer(await storage.get(key));
    if (!back.equals(body)) throw new WalshipError(ExitCode.integrity, `probe object ${key} read back different bytes`);
    await storage.delete([key]);
    if (await storage.head(key)) throw new WalshipError(ExitCode.storage, `probe object ${key} still there after delete`);
    storageOk = true;
    add('storage', 'ok', `${storage.location}: wrote, read back and deleted a probe object (${Date.now() - started} ms)`);
  } catch (err) {
    add('storage', 'fail', `${storage.location}: ${oneLine(err)}`, err instanceof WalshipError ? err.exitCode : ExitCode.storage);
  }

  let info: RepositoryInfo | undefined;
  if (storageOk) {
    try {
      info = await readRepositoryInfo(storage);
      if (info) add('repository', 'ok', `walship.json: database system ${info.systemIdentifier}${info.pgMajor ? `, PostgreSQL ${info.pgMajor}` : ''}, created ${info.created}${info.encryption ? ', encrypted' : ''}`);
      else add('repository', 'warn', `no ${keys.repositoryInfo} yet: the first wal-push creates it`);
    } catch (err) {
      add('repository', 'fail', oneLine(err), err instanceof WalshipError ? err.exitCode : ExitCode.storage);
    }
  }

  if (!options.cluster) {
    add('cluster', 'skipped', '--no-cluster');
  } else {
    let probe: ClusterProbe | undefined;
    try {
      probe = await ClusterProbe.connect(options.connection);
      const facts = await probe.facts();
      add('cluster', 'ok', `PostgreSQL ${facts.version} (${facts.where}), ${facts.inRecovery ? 'in recovery (standby)' : 'primary'}`);
      checkArchiving(facts, add);
      if (info) {
        if (info.systemIdentifier === facts.systemIdentifier) add('system identifier', 'ok', `${facts.systemIdentifier} matches the repository`);
        else {
          add(
            'system identifier',
            'fail',
            `the cluster is database system ${facts.systemIdentifier} but the repository belongs to ${info.systemIdentifier}: one repository per cluster (a restored copy that was promoted keeps its system identifier; a new initdb does not)`,
            ExitCode.refused,
          );
        }
      } else add('system identifier', 'skipped', 'the repository has no walship.json yet');
      if (options.switchWal) {
        if (facts.inRecovery) add('switch-wal', 'skipped', 'the cluster is in recovery: pg_switch_wal() runs on the primary');
        else if (storageOk) await switchAndWait(probe, storage, options.switchWalTimeoutMs, add);
        else add('switch-wal', 'skipped', 'storage is not usable');
      }
    } catch (err) {
      add('cluster', 'fail', oneLine(err), err instanceof WalshipError ? err.exitCode : ExitCode.postgres);
    } finally {
      await probe?.close();
    }
  }
  const failed = checks.find((c) => c.status === 'fail');
  return { ok: !failed, exitCode: failed?.exitCode ?? ExitCode.ok, checks };
}

function checkArchiving(facts: ClusterFacts, add: (name: string, status: CheckStatus, detail: string, exitCode?: ExitCodeValue) => void): void {
  const mode = facts.archiveMode;
  if (mode === 'on' || mode === 'always') add('archive_mode', 'ok', `archive_mode = ${mode}`);
  else add('archive_mode', 'fail', `archive_mode = ${mode}: set archive_mode = on (needs a restart)`, ExitCode.refused);
  if (facts.archiveLibrary) {
    add('archive_command', 'fail', `archive_library = '${facts.archiveLibrary}' is set, so archive_command is not used: set archive_library = '' and archive_command = 'walship wal-push %p'`, ExitCode.refused);
  } else {
    const problem = archiveCommandProblem(facts.archiveCommand);
    if (problem) add('archive_command', 'fail', problem, ExitCode.refused);
    else add('archive_command', 'ok', `archive_command = '${facts.archiveCommand}'`);
  }
  const a = facts.archiver;
  if (a.failedCount > 0 && a.lastFailedTime && (!a.lastArchivedTime || a.lastFailedTime > a.lastArchivedTime)) {
    add('archiver', 'warn', `the last archive attempt failed: ${a.lastFailedWal} at ${a.lastFailedTime.toISOString()} (${a.failedCount} failures since the statistics reset; the server log has walship's message)`);
  } else {
    add('archiver', 'ok', a.lastArchivedWal ? `last archived ${a.lastArchivedWal} at ${a.lastArchivedTime?.toISOString()}; ${a.archivedCount} archived, ${a.failedCount} failed since the statistics reset` : 'nothing archived yet since the statistics reset');
  }
}

async function switchAndWait(
  probe: ClusterProbe,
  storage: Storage,
  timeoutMs: number,
  add: (name: string, status: CheckStatus, detail: string, exitCode?: ExitCodeValue) => void,
): Promise<void> {
  const started = Date.now();
  const segment = await probe.switchWal();
  for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
    if (await storage.head(keys.wal(segment))) {
      add('switch-wal', 'ok', `switched WAL; ${segment} reached the repository in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      return;
    }
    if (Date.now() - started > timeoutMs) {
      const facts = await probe.facts().catch(() => undefined);
      const failure = facts?.archiver.lastFailedWal ? ` (last archive failure: ${facts.archiver.lastFailedWal} at ${facts.archiver.lastFailedTime?.toISOString()})` : '';
      add('switch-wal', 'fail', `switched WAL, but ${segment} did not reach the repository within ${Math.round(timeoutMs / 1000)} s${failure}: check archive_command and the server log`, ExitCode.refused);
      return;
    }
    await sleep(delay);
  }
}

// ---------------------------------------------------------------------------------------------
// status
// ---------------------------------------------------------------------------------------------

/** `walship status --json`: the documented fields (README: "walship status --json"). */
export interface StatusReport {
  time: string;
  repository: {
    location: string;
    systemIdentifier: string | null;
    pgMajor: number | null;
    encrypted: boolean;
    objects: number;
    bytes: number;
    walBytes: number;
    backupBytes: number;
    dumpBytes: number;
  };
  backups: {
    count: number;
    permanent: number;
    incomplete: number;
    newest: { name: string; startTime: string; stopTime: string; ageSeconds: number } | null;
    oldest: { name: string; startTime: string } | null;
  };
  wal: {
    segments: number;
    timeline: number | null;
    newestSegment: string | null;
    /** Storage modification time of the newest segment: when it was archived. */
    newestArchivedAt: string | null;
    newestAgeSeconds: number | null;
    gaps: number;
  };
  cluster:
    | {
        reachable: true;
        systemIdentifierMatches: boolean | null;
        inRecovery: boolean;
        currentWalFile: string | null;
        currentLsn: string | null;
        /** Complete segments written but not yet in the repository (0 when archiving keeps up). */
        archiveLagSegments: number | null;
        archiveLagBytes: number | null;
        lastArchivedWal: string | null;
        lastArchivedTime: string | null;
        failedCount: number;
        lastFailedWal: string | null;
        lastFailedTime: string | null;
      }
    | { reachable: false; error: string }
    | null;
}

export interface StatusInput {
  storage: Storage;
  encryption: Encryption | undefined;
  connection: ConnectionSettings | undefined;
  now?: Date | undefined;
}

export async function collectStatus(input: StatusInput): Promise<StatusReport> {
  const { storage } = input;
  const now = input.now ?? new Date();
  const info = await readRepositoryInfo(storage);
  const { loadBackupCatalog } = await import('./catalog.ts');
  const { listArchivedWal, buildInventory, detectSegmentSize, currentTimeline } = await import('../wal/inventory.ts');
  const catalog = await loadBackupCatalog(storage, input.encryption);

  let objects = 0;
  let bytes = 0;
  let walBytes = 0;
  let backupBytes = 0;
  let dumpBytes = 0;
  for await (const o of storage.list('')) {
    objects++;
    bytes += o.size;
    if (o.key.startsWith(keys.walPrefix)) walBytes += o.size;
    else if (o.key.startsWith(keys.backupsPrefix)) backupBytes += o.size;
    else if (o.key.startsWith(keys.dumpsPrefix)) dumpBytes += o.size;
  }

  const listing = await listArchivedWal(storage);
  const segmentSize = (await detectSegmentSize(storage, listing, input.encryption, catalog.segmentSize)) ?? 16 * 1024 * 1024;
  const inventory = buildInventory(listing, segmentSize);
  const segments = listing.files.filter((f) => f.kind === 'segment');
  const timeline = segments.length ? currentTimeline(inventory) : null;
  const newestFile = newestSegment(segments, segmentSize, timeline ?? 1);

  const ordered = [...catalog.backups].sort(compareBackups);
  const newest = ordered.at(-1);
  const report: StatusReport = {
    time: now.toISOString(),
    repository: {
      location: storage.location,
      systemIdentifier: info?.systemIdentifier ?? null,
      pgMajor: info?.pgMajor ?? null,
      encrypted: Boolean(info?.encryption),
      objects,
      bytes,
      walBytes,
      backupBytes,
      dumpBytes,
    },
    backups: {
      count: ordered.length,
      permanent: ordered.filter((b) => b.permanent).length,
      incomplete: catalog.incomplete.length,
      newest: newest ? { name: newest.name, startTime: newest.startTime.toISOString(), stopTime: newest.stopTime.toISOString(), ageSeconds: Math.round((now.getTime() - newest.stopTime.getTime()) / 1000) } : null,
      oldest: ordered[0] ? { name: ordered[0].name, startTime: ordered[0].startTime.toISOString() } : null,
    },
    wal: {
      segments: segments.length,
      timeline,
      newestSegment: newestFile?.name ?? null,
      newestArchivedAt: newestFile?.modified.toISOString() ?? null,
      newestAgeSeconds: newestFile ? Math.round((now.getTime() - newestFile.modified.getTime()) / 1000) : null,
      gaps: inventory.timelines.reduce((n, t) => n + t.gaps.length, 0),
    },
    cluster: null,
  };

  if (input.connection) {
    let probe: ClusterProbe | undefined;
    try {
      probe = await ClusterProbe.connect(input.connection);
      const facts = await probe.facts();
      let lagSegments: number | null = null;
      let lagBytes: number | null = null;
      if (facts.currentWalFile && facts.currentLsn) {
        const current = parseWalFileName(facts.currentWalFile)!;
        const size = facts.walSegmentSize;
        const currentSeg = segmentNumber(current.segmentId!, size);
        const archived = newestSegment(segments, size, current.timeline);
        const archivedSeg = archived ? segmentNumber(archived.segmentId!, size) : undefined;
        // Everything before the current segment should be archived; the current one is still being written.
        const lag = archivedSeg === undefined ? currentSeg : currentSeg - archivedSeg - 1n;
        lagSegments = Number(lag < 0n ? 0n : lag);
        const archivedEnd = archivedSeg === undefined ? 0n : (archivedSeg + 1n) * BigInt(size);
        const written = currentSeg * BigInt(size);
        lagBytes = Number(written > archivedEnd ? written - archivedEnd : 0n);
      }
      report.cluster = {
        reachable: true,
        systemIdentifierMatches: info ? info.systemIdentifier === facts.systemIdentifier : null,
        inRecovery: facts.inRecovery,
        currentWalFile: facts.currentWalFile ?? null,
        currentLsn: facts.currentLsn ?? null,
        archiveLagSegments: lagSegments,
        archiveLagBytes: lagBytes,
        lastArchivedWal: facts.archiver.lastArchivedWal,
        lastArchivedTime: facts.archiver.lastArchivedTime?.toISOString() ?? null,
        failedCount: facts.archiver.failedCount,
        lastFailedWal: facts.archiver.lastFailedWal,
        lastFailedTime: facts.archiver.lastFailedTime?.toISOString() ?? null,
      };
    } catch (err) {
      report.cluster = { reachable: false, error: oneLine(err) };
    } finally {
      await probe?.close();
    }
  }
  return report;
}

/**
 * The newest archived segment for a cluster on `timeline`: the highest position among segments
 * of that timeline or below (an ancestor's segments count until the new timeline has its own).
 */
function newestSegment<T extends { name: string; kind: string; timeline: number; segmentId?: string | undefined; modified: Date }>(files: readonly T[], segmentSize: number, timeline: number): T | undefined {
  let best: T | undefined;
  let bestSeg = -1n;
  for (const f of files) {
    if (f.kind !== 'segment' || f.timeline > timeline) continue;
    const s = segmentNumber(f.segmentId!, segmentSize);
    if (s > bestSeg || (s === bestSeg && best && f.timeline > best.timeline)) {
      best = f;
      bestSeg = s;
    }
  }
  return best;
}
