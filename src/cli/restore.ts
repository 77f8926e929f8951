import type { Command } from 'commander';
import { isAbsolute, resolve } from 'node:path';
import { action, settingsHelp } from './context.ts';
import { settings, type SettingKey } from '../config/settings.ts';
import { usageError } from '../errors.ts';
import { collectTablespaceMap } from './backup-fetch.ts';

const example = `
Example: the table was dropped at 14:07; bring the cluster back as it was at 14:05.
  # stop the damaged server and move its data directory aside
  pg_ctl -D /var/lib/postgresql/17/main stop
  mv /var/lib/postgresql/17/main /var/lib/postgresql/17/main.broken
  # as the postgres user: newest backup before 14:05, WAL checked, files verified
  walship --config /etc/walship/walship.json restore /var/lib/postgresql/17/main \\
      --target-time '2026-11-27 14:05:00+00' --target-action promote
  pg_ctl -D /var/lib/postgresql/17/main start
  # PostgreSQL fetches WAL through restore_command, replays up to 14:05:00 and promotes
  psql -c 'SELECT count(*) FROM important_table'

What it writes into <dir>: the backup's files, backup_label (and tablespace_map), recovery.signal
(standby.signal with --standby), and at the end of postgresql.auto.conf:
  restore_command = '/opt/walship/bin/walship --config /etc/walship/walship.json wal-fetch %f %p'
  recovery_target_time = '2026-11-27 14:05:00+00'     (and the other recovery_target_* set to '')
  recovery_target_action = 'promote'
restore_command calls this walship by absolute path (and the same --config), so the server needs
no PATH changes; settings given as WALSHIP_* environment variables are written into it too.

Targets: --target-time (with a zone), --target-lsn, --target-xid, --target-name
(pg_create_restore_point), --immediate (the end of the backup), none (all archived WAL).
The backup chosen is the newest that ends before a time or LSN target; for a transaction or a
restore point it is the newest backup unless --backup names an older one. The archive must hold
every WAL segment from the backup's start to the target (for targets other than an LSN: up to the
newest archived segment) on the target timeline; otherwise restore refuses (exit 3) and names
the first missing segment. Without --target-action PostgreSQL pauses at the target (read-only,
inspect, then SELECT pg_wal_replay_resume() to promote).
`;

/** Settings wal-fetch reads: when they come from the environment, restore_command must carry them. */
const walFetchSettings: SettingKey[] = ['storage', 'identityFile', 'passphraseFile', 'storageTimeout', 'logFormat', 'logLevel', 'downloadConcurrency'];
const pathSettings = new Set<SettingKey>(['identityFile', 'passphraseFile']);

export function register(program: Command): void {
  const command = program
    .command('restore')
    .description('point-in-time recovery into an empty directory: choose the backup, check the WAL, fetch, write the recovery settings')
    .argument('<dir>', 'target data directory: must be empty or absent')
    .option('--target-time <time>', "recover up to this time, with its zone: '2026-11-27 14:05:00+00'")
    .option('--target-lsn <lsn>', 'recover up to this WAL location (X/Y)')
    .option('--target-xid <xid>', 'recover up to this transaction')
    .option('--target-name <name>', 'recover up to this restore point (pg_create_restore_point)')
    .option('--immediate', 'recover only to the end of the backup (the earliest consistent state)')
    .option('--target-timeline <tli>', 'latest (default), current, or a timeline number')
    .option('--target-action <action>', 'at the target: pause (PostgreSQL default), promote or shutdown')
    .option('--standby', 'write standby.signal: the server keeps fetching WAL from the archive as a standby')
    .option('--backup <name>', 'restore from this backup instead of the newest one before the target')
    .option('--tablespace-map <old=new>', 'put the tablespace at OLD into NEW instead (repeatable)', collectTablespaceMap)
    .addHelpText('after', example)
    .addHelpText('after', settingsHelp(['storage', 'identityFile', 'passphraseFile', 'downloadConcurrency', 'storageTimeout', 'logFormat', 'logLevel'], settings));
  command.action(
    action('restore', async (ctx, dir: string) => {
      const flags = command.opts<{
        targetTime?: string;
        targetLsn?: string;
        targetXid?: string;
        targetName?: string;
        immediate?: boolean;
        targetTimeline?: string;
        targetAction?: string;
        standby?: boolean;
        backup?: string;
        tablespaceMap?: Map<string, string>;
      }>();
      const { parseTarget, parseTargetTimeline, describeTarget } = await import('../restore/target.ts');
      const { restoreCommand } = await import('../restore/recovery-conf.ts');
      const { walshipExecutable } = await import('../restore/executable.ts');
      const { restore } = await import('../restore/restore.ts');
      const target = parseTarget(flags);
      const timeline = parseTargetTimeline(flags.targetTimeline);
      const targetAction = flags.targetAction;
      if (targetAction !== undefined && !['pause', 'promote', 'shutdown'].includes(targetAction)) {
        throw usageError(`--target-action ${targetAction}: expected pause, promote or shutdown`);
      }
      if (targetAction !== undefined && target.kind === 'latest') throw usageError('--target-action needs a recovery target');
      const environment = walFetchSettings
        .filter((key) => process.env[settings[key].env])
        .map((key) => {
          const value = process.env[settings[key].env]!;
          return [settings[key].env, pathSettings.has(key) && !isAbsolute(value) ? resolve(value) : value] as const;
        });
      const configPath = ctx.config.configPath ? resolve(ctx.config.configPath) : undefined;
      const plan = await restore({
        storage: await ctx.storage(),
        encryption: await ctx.encryption(),
        target: dir,
        recoveryTarget: target,
        timeline,
        timelineSetting: flags.targetTimeline,
        action: targetAction as 'pause' | 'promote' | 'shutdown' | undefined,
        standby: Boolean(flags.standby),
        backup: flags.backup,
        tablespaceMap: flags.tablespaceMap,
        downloadConcurrency: ctx.config.downloadConcurrency,
        restoreCommand: restoreCommand({ executable: walshipExecutable(), configPath, environment, standby: Boolean(flags.standby) }),
      });
      const abs = resolve(dir);
      process.stdout.write(
        `restored backup ${plan.backup.name} into ${abs}; recovery target: ${describeTarget(target)} on timeline ${plan.timeline}\n` +
          `start it (as the owner of the files, usually postgres): pg_ctl -D ${abs} start\n`,
      );
    }),
  );
}
