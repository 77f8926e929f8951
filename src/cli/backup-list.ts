import type { Command } from 'commander';
import { action, settingsHelp } from './context.ts';
import { settings } from '../config/settings.ts';

export function register(program: Command): void {
  const command = program
    .command('backup-list')
    .description('complete base backups in the repository, oldest first')
    .option('--json', 'one JSON array of backups on stdout')
    .addHelpText('after', '\nA backup is listed once its manifest is written (backup-push writes it last); an interrupted backup-push leaves no listed backup.\n')
    .addHelpText('after', settingsHelp(['storage', 'identityFile', 'passphraseFile', 'storageTimeout', 'logFormat', 'logLevel'], settings));
  command.action(
    action('backup-list', async (ctx) => {
      const flags = command.opts<{ json?: boolean }>();
      const { listBackups } = await import('../backup/catalog.ts');
      const { applyMarks } = await import('../retention/catalog.ts');
      const { formatBackupTable } = await import('../backup/list-format.ts');
      const storage = await ctx.storage();
      // backup-mark's pins override the permanent flag backup-push recorded.
      const backups = await applyMarks(storage, await listBackups(storage, await ctx.encryption()));
      process.stdout.write(flags.json ? `${JSON.stringify(backups, null, 2)}\n` : formatBackupTable(backups));
    }),
  );
}
