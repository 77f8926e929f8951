import type { Command } from 'commander';
import { action, settingsHelp } from './context.ts';
import { settings } from '../config/settings.ts';
import { usageError } from '../errors.ts';

/** Parse repeated --tablespace-map OLD=NEW flags. */
export function collectTablespaceMap(value: string, previous: Map<string, string> = new Map()): Map<string, string> {
  const cut = value.indexOf('=');
  if (cut <= 0 || cut === value.length - 1) throw usageError(`--tablespace-map ${value}: expected OLD=NEW (absolute directories)`);
  previous.set(value.slice(0, cut), value.slice(cut + 1));
  return previous;
}

export function register(program: Command): void {
  const command = program
    .command('backup-fetch')
    .description('lay a base backup into an empty directory, verifying every file')
    .argument('<backup>', 'backup name (see backup-list) or LATEST')
    .argument('<dir>', 'target data directory: must be empty or absent')
    .option('--tablespace-map <old=new>', 'put the tablespace at OLD into NEW instead (repeatable)', collectTablespaceMap)
    .addHelpText(
      'after',
      `
Every file is checked against its SHA-256 in the manifest (exit 4 on a mismatch); tar entries
that are absolute, contain '..', leave the target or are not in the manifest are refused.
Directories are created 0700, files 0600; global/pg_control is written last. backup_label and
tablespace_map come from the manifest. To recover to a point in time, use 'walship restore'.
`,
    )
    .addHelpText('after', settingsHelp(['storage', 'identityFile', 'passphraseFile', 'downloadConcurrency', 'storageTimeout', 'logFormat', 'logLevel'], settings));
  command.action(
    action('backup-fetch', async (ctx, backup: string, dir: string) => {
      const flags = command.opts<{ tablespaceMap?: Map<string, string> }>();
      const { fetchBackup } = await import('../backup/fetch.ts');
      await fetchBackup({
        storage: await ctx.storage(),
        encryption: await ctx.encryption(),
        backup,
        target: dir,
        tablespaceMap: flags.tablespaceMap,
        downloadConcurrency: ctx.config.downloadConcurrency,
      });
    }),
  );
}
