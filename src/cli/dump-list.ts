import type { Command } from 'commander';
import { action, settingsHelp } from './context.ts';
import { settings } from '../config/settings.ts';

export function register(program: Command): void {
  const command = program
    .command('dump-list')
    .description('complete logical dumps (those with a manifest), oldest first')
    .option('--json', 'the manifests as a JSON array')
    .option('--dbname <db>', 'only dumps holding this database')
    .addHelpText('after', settingsHelp(['storage', 'identityFile', 'passphraseFile', 'storageTimeout', 'logFormat', 'logLevel'], settings));
  command.action(
    action('dump-list', async (ctx) => {
      const flags = command.opts<{ json?: boolean; dbname?: string }>();
      const { listDumps, holdsDatabase } = await import('../dump/manifest.ts');
      const { formatDumpTable } = await import('../dump/format.ts');
      let dumps = await listDumps(await ctx.storage(), await ctx.encryption());
      if (flags.dbname !== undefined) dumps = dumps.filter((m) => holdsDatabase(m, flags.dbname!));
      process.stdout.write(flags.json ? `${JSON.stringify(dumps, null, 2)}\n` : formatDumpTable(dumps));
    }),
  );
}
