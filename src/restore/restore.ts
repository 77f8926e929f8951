import { readdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Encryption } from '../codec/codec.ts';
import { refusedError } from '../errors.ts';
import { log } from '../log.ts';
import { listBackups } from '../backup/catalog.ts';
import { fetchBackup } from '../backup/fetch.ts';
import { readManifest } from '../backup/manifest.ts';
import { readRepositoryInfo } from '../repository.ts';
import type { Storage } from '../storage/storage.ts';
import { ArchiveIndex } from './archive.ts';
import { planRestore, type RestorePlan } from './plan.ts';
import { recoverySettings, writeRecoveryConfig, type TargetAction } from './recovery-conf.ts';
import { describeTarget, type RecoveryTarget, type TargetTimeline } from './target.ts';

export interface RestoreOptions {
  storage: Storage;
  encryption: Encryption | undefined;
  target: string;
  recoveryTarget: RecoveryTarget;
  timeline: TargetTimeline;
  /** As the user wrote it, for recovery_target_timeline; undefined leaves PostgreSQL's default (latest). */
  timelineSetting?: string | undefined;
  action?: TargetAction | undefined;
  standby: boolean;
  backup?: string | undefined;
  tablespaceMap?: ReadonlyMap<string, string>;
  downloadConcurrency: number;
  restoreCommand: string;
}

/**
 * One-command point-in-time recovery: choose the backup, prove the archived WAL reaches the
 * target, lay the backup into the empty directory, and write recovery.signal (or standby.signal)
 * with restore_command and the target. PostgreSQL then replays to the target on its own.
 */
export async function restore(options: RestoreOptions): Promise<RestorePlan> {
  const dir = resolve(options.target);
  const existing = await readdir(dir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? [] : Promise.reject(err)));
  if (existing.length > 0) throw refusedError(`target directory ${dir} is not empty; restore only writes into an empty directory`);

  const [backups, archive, repository] = await Promise.all([
    listBackups(options.storage, options.encryption),
    ArchiveIndex.scan(options.storage, options.encryption),
    readRepositoryInfo(options.storage),
  ]);
  const plan = await planRestore(backups, archive, {
    target: options.recoveryTarget,
    timeline: options.timeline,
    backup: options.backup,
    standby: options.standby,
    systemIdentifier: repository?.systemIdentifier,
  });
  log.info('restore plan', {
    backup: plan.backup.name,
    target: describeTarget(options.recoveryTarget),
    timeline: plan.timeline,
    wal: `${plan.firstSegment}..${plan.lastSegment} archived`,
  });
  const manifest = await readManifest(options.storage, plan.backup.name, options.encryption);
  await fetchBackup({
    storage: options.storage,
    encryption: options.encryption,
    backup: plan.backup.name,
    manifest,
    target: dir,
    tablespaceMap: options.tablespaceMap,
    downloadConcurrency: options.downloadConcurrency,
  });
  const settings = recoverySettings({ restoreCommand: options.restoreCommand, target: options.recoveryTarget, timeline: options.timelineSetting, action: options.action });
  await writeRecoveryConfig(
    dir,
    settings,
    options.standby ? 'standby' : 'recovery',
    `walship restore ${new Date().toISOString()}: backup ${plan.backup.name}, target ${describeTarget(options.recoveryTarget)}`,
  );
  return plan;
}
