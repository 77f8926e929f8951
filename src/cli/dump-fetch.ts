import type { Command } from 'commander';
import { action, settingsHelp } from './context.ts';
import { settings } from '../config/settings.ts';
import { usageError } from '../errors.ts';

interface Flags {
  output?: string;
  restore?: boolean;
  dbname?: string;
  source?: string;
  globals?: boolean;
}

export function register(program: Command): void {
  const command = program
    .command('dump-fetch')
    .description('fetch a logical dump to a file (-o) or restore it with pg_restore into an existing empty database (--restore --dbname)')
    .argument('<name>', 'dump name (walship dump-list) or LATEST')
    .argument('[pg_restore_options...]', 'after --: options passed to pg_restore as they are (e.g. -- --no-owner --exit-on-error)')
    .option('-o, --output <path>', 'write the dump to this file (not overwritten; - for stdout); a cluster dump (--all) without --source goes into this new directory')
    .option('--restore', 'stream the dump into pg_restore -d <--dbname>')
    .option('-d, --dbname <db>', 'with --restore: the database to restore into; it must exist and be empty (createdb it first)')
    .option('--source <db>', 'the dumped database: LATEST means the newest dump of it; picks that database out of a cluster dump')
    .option('--globals', 'the roles and tablespaces script (globals.sql) of a cluster dump, for psql -f')
    .addHelpText('after', settingsHelp(['storage', 'identityFile', 'passphraseFile', 'pgBinDir', 'pghost', 'pgport', 'pguser', 'pgpassword', 'storageTimeout', 'logFormat', 'logLevel'], settings))
    .addHelpText('after', `
Examples:
  walship dump-fetch LATEST --source app -o app.dump          then: pg_restore -j 4 -d app_copy app.dump
  createdb app_copy && walship dump-fetch LATEST --source app --restore --dbname app_copy -- --no-owner
  walship dump-fetch dumpall_20261127T030000Z -o /restore/cluster   globals.sql + one .dump per database

-o writes a temp file and renames it only once its SHA-256 matches the manifest. Exit 2 when the
destination cannot be written (disk full: nothing is left behind), 3 when it already exists or the
target database is not empty, 4 on a checksum or decryption failure, 6 when pg_restore fails.
`);
  command.action(
    action('dump-fetch', async (ctx, name: string, pgRestoreArgs: string[] = []) => {
      const flags = command.opts<Flags>();
      if (flags.restore === undefined && flags.output === undefined) throw usageError('dump-fetch: give -o FILE (or -o - for stdout) or --restore --dbname DB');
      if (flags.restore && flags.output !== undefined) throw usageError('dump-fetch: give either -o or --restore, not both');
      if (flags.restore && flags.dbname === undefined) throw usageError('dump-fetch --restore: give the target database with --dbname (it must exist and be empty)');
      if (!flags.restore && flags.dbname !== undefined) throw usageError('dump-fetch: --dbname names the database to restore into; add --restore (use --source to pick the dumped database)');
      if (!flags.restore && pgRestoreArgs.length) throw usageError(`dump-fetch: pg_restore options (${pgRestoreArgs.join(' ')}) only apply with --restore`);
      const { resolveDump } = await import('../dump/manifest.ts');
      const fetch = await import('../dump/fetch.ts');
      const storage = await ctx.storage();
      const encryption = await ctx.encryption();
      const manifest = await resolveDump(storage, name, encryption, flags.globals ? undefined : flags.source);
      const file = fetch.selectFile(manifest, { source: flags.source, globals: flags.globals });
      const fetchCtx = { storage, encryption };
      if (flags.restore) {
        if (!file) throw usageError(`dump ${manifest.name} is a cluster dump; pick its database with --source (one of: ${fetch.databasesOf(manifest)})`);
        const { pgTools } = await import('../dump/tools.ts');
        fetch.checkPgRestoreArgs(pgRestoreArgs);
        await fetch.restoreDump(fetchCtx, manifest, file, { dbname: flags.dbname!, pgRestoreArgs, tools: pgTools(ctx.config) });
      } else if (flags.output === '-') {
        if (!file) throw usageError(`dump ${manifest.name} is a cluster dump: -o - needs --source DB or --globals`);
        await fetch.fetchToStdout(fetchCtx, manifest, file);
      } else if (file) {
        await fetch.fetchToFile(fetchCtx, manifest, file, flags.output!);
      } else {
        const paths = await fetch.fetchToDirectory(fetchCtx, manifest, flags.output!);
        process.stderr.write(`restore with: psql -X -f ${flags.output}/globals.sql postgres; then per database: pg_restore --create -d postgres FILE.dump\n${paths.map((p) => `  ${p}`).join('\n')}\n`);
      }
    }),
  );
}
