import type { Command } from 'commander';
import { action, settingsHelp } from './context.ts';
import { settings } from '../config/settings.ts';
import { usageError } from '../errors.ts';

export function register(program: Command): void {
  const command = program
    .command('dump-push')
    .description('logical dump (pg_dump -Fc) of one database, or with --all the globals and every database, streamed into the repository')
    .option('-d, --dbname <db>', 'database to dump (a name or a conninfo, as pg_dump -d takes it); default PGDATABASE, as libpq')
    .option('--all', 'the whole cluster: roles and tablespaces (pg_dumpall --globals-only) plus a pg_dump -Fc of every database that accepts connections, under one name')
    .addHelpText('after', settingsHelp(['storage', 'compression', 'compressionLevel', 'recipients', 'recipientsFile', 'passphraseFile', 'allowUnencrypted', 'pgBinDir', 'pghost', 'pgport', 'pguser', 'pgdatabase', 'pgpassword', 'storageTimeout', 'logFormat', 'logLevel'], settings))
    .addHelpText('after', '\nPrints the new dump\'s name on stdout. pg_dump runs with --no-password: give passwords through PGPASSWORD or ~/.pgpass. Exit 6 when pg_dump fails (its message is logged); nothing is left listed.\n');
  command.action(
    action('dump-push', async (ctx) => {
      const flags = command.opts<{ dbname?: string; all?: boolean }>();
      if (flags.all && flags.dbname !== undefined) throw usageError('--all dumps every database; give either --all or --dbname');
      const { pgTools } = await import('../dump/tools.ts');
      const { pushDatabaseDump, pushClusterDump } = await import('../dump/push.ts');
      const dumpCtx = { storage: await ctx.storage(), encode: await ctx.encodeOptions(), tools: pgTools(ctx.config), allowUnencrypted: ctx.config.allowUnencrypted };
      const manifest = flags.all ? await pushClusterDump(dumpCtx) : await pushDatabaseDump(dumpCtx, flags.dbname);
      process.stdout.write(`${manifest.name}\n`);
    }),
  );
}
