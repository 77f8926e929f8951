import type { Command } from 'commander';
import { action, settingsHelp } from './context.ts';
import { settings } from '../config/settings.ts';

export function register(program: Command): void {
  const command = program
    .command('backup-mark')
    .description('pin a backup (permanent: retention never deletes it or the WAL it needs to restore), or unpin it with --impermanent')
    .argument('<name>', 'backup name (backup-list), or LATEST')
    .option('--impermanent', 'unpin: retention may delete it again')
    .addHelpText(
      'after',
      `\nThe mark is one small object, backups/<name>/mark.json, written next to the backup; the backup's
manifest and parts are not rewritten. It overrides backup-push --permanent in both directions.
A permanent backup keeps its own WAL (start to stop segment), so it stays restorable to its end
(restore --backup <name> --immediate); point-in-time recovery after it needs newer backups.\n`,
    )
    .addHelpText('after', settingsHelp(['storage', 'identityFile', 'passphraseFile', 'storageTimeout', 'logFormat', 'logLevel'], settings));
  command.action(
    action('backup-mark', async (ctx, name: string) => {
      const flags = command.opts<{ impermanent?: boolean }>();
      const { resolveBackup } = await import('../backup/catalog.ts');
      const { writeMark } = await import('../retention/catalog.ts');
      const { log } = await import('../log.ts');
      const storage = await ctx.storage();
      const backup = await resolveBackup(storage, await ctx.encryption(), name);
      const permanent = !flags.impermanent;
      await writeMark(storage, backup.name, permanent);
      log.info(permanent ? 'backup marked permanent' : 'backup no longer permanent', { backup: backup.name });
      process.stdout.write(`${backup.name}: ${permanent ? 'permanent' : 'not permanent'}\n`);
    }),
  );
}
