import type { Command } from 'commander';
import { action, settingsHelp } from './context.ts';
import { settings } from '../config/settings.ts';

export function register(program: Command): void {
  const command = program
    .command('backup-push')
    .description('online base backup of the local cluster into the repository (run it from cron)')
    .option('--pgdata <dir>', 'data directory of the cluster (default: PGDATA, else the server\'s data_directory)')
    .option('--fast', 'start with an immediate checkpoint instead of a spread one (more I/O now, the backup starts sooner)')
    .option('--verify-checksums', 'verify data page checksums while reading (clusters with data checksums); failures are logged and recorded in the manifest')
    .option('--permanent', 'mark the backup permanent: retention never deletes it or the WAL it needs')
    .option('--name <name>', 'backup name instead of base_<start WAL segment> (letters, digits, _ - .)')
    .addHelpText(
      'after',
      `
Connects like libpq (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, ~/.pgpass), runs the
non-exclusive pg_backup_start/pg_backup_stop (pg_start_backup/pg_stop_backup on 14) in one
session, streams the data directory and tablespaces as tar parts through compression (and
encryption) into storage, waits until the backup's last WAL segment is archived, and writes the
manifest last: a backup without a manifest is incomplete and never listed or restored.
The server must archive with archive_command = 'walship wal-push %p'.

Example (cron, as the postgres user):
  0 3 * * *  PGDATA=/var/lib/postgresql/17/main walship --config /etc/walship/walship.json backup-push
`,
    )
    .addHelpText(
      'after',
      settingsHelp(
        ['storage', 'compression', 'compressionLevel', 'recipients', 'recipientsFile', 'passphraseFile', 'allowUnencrypted', 'uploadConcurrency', 'backupPartSize', 'archiveTimeout', 'pgdata', 'pghost', 'pgport', 'pguser', 'pgdatabase', 'pgpassword', 'storageTimeout', 'logFormat', 'logLevel'],
        settings,
      ),
    );
  command.action(
    action(
      'backup-push',
      async (ctx) => {
        const flags = command.opts<{ fast?: boolean; verifyChecksums?: boolean; permanent?: boolean; name?: string }>();
        const { pushBackup } = await import('../backup/push.ts');
        const c = ctx.config;
        await pushBackup({
          storage: await ctx.storage(),
          encode: await ctx.encodeOptions(),
          connection: { host: c.pghost, port: c.pgport, user: c.pguser, database: c.pgdatabase, password: c.pgpassword },
          pgdata: c.pgdata,
          fast: Boolean(flags.fast),
          verifyChecksums: Boolean(flags.verifyChecksums),
          permanent: Boolean(flags.permanent),
          name: flags.name,
          partSize: c.backupPartSize,
          uploadConcurrency: c.uploadConcurrency,
          archiveTimeoutMs: c.archiveTimeout * 1000,
          allowUnencrypted: c.allowUnencrypted,
        });
      },
      { overrides: (flags) => ({ pgdata: flags.pgdata }) },
    ),
  );
}
