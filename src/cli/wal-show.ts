import type { Command } from 'commander';
import { action, settingsHelp } from './context.ts';
import { settings } from '../config/settings.ts';

export function register(program: Command): void {
  const command = program
    .command('wal-show')
    .description('archived WAL per timeline: first and last segment, count, size, gaps, backups starting on it')
    .option('--json', 'one JSON object on stdout')
    .addHelpText('after', '\nGaps here are holes between archived segments of a timeline; wal-verify says whether any of them matters for the backups.\n')
    .addHelpText('after', settingsHelp(['storage', 'identityFile', 'passphraseFile', 'storageTimeout', 'logFormat', 'logLevel'], settings));
  command.action(
    action('wal-show', async (ctx) => {
      const flags = command.opts<{ json?: boolean }>();
      const { loadBackupCatalog } = await import('../retention/catalog.ts');
      const { loadInventory } = await import('../wal/inventory.ts');
      const { walShowData, formatWalShow } = await import('../retention/format.ts');
      const storage = await ctx.storage();
      const encryption = await ctx.encryption();
      const catalog = await loadBackupCatalog(storage, encryption);
      const { inventory, histories } = await loadInventory(storage, encryption, catalog.segmentSize, { skipUnreadableHistories: !encryption?.decrypt });
      const data = walShowData(inventory, histories, catalog.backups);
      process.stdout.write(flags.json ? `${JSON.stringify(data, null, 2)}\n` : formatWalShow(data));
    }),
  );
}
