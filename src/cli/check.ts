import type { Command } from 'commander';
import { action, settingsHelp } from './context.ts';
import { settings } from '../config/settings.ts';

export function register(program: Command): void {
  const command = program
    .command('check')
    .description('is walship set up right? configuration, repository writable, archiving through walship, the right cluster')
    .option('--json', 'one JSON object on stdout')
    .option('--switch-wal', 'also force a WAL segment switch and wait until that segment is in the repository')
    .option('--timeout <seconds>', 'with --switch-wal: how long to wait', '60')
    .option('--no-cluster', 'check only the configuration and the repository (no PostgreSQL connection)')
    .addHelpText(
      'after',
      `
Checks, in order: the configuration loads; the repository accepts a write, read and delete of a
probe object (check/probe-*); walship.json; the cluster (PGHOST, PGPORT...) is reachable, has
archive_mode on and an archive_command calling 'walship ... wal-push %p' (no archive_library);
pg_stat_archiver shows no recent failure (warning); the cluster's system identifier is the one in
walship.json; with --switch-wal, a forced segment arrives within --timeout.

Exit codes: 0 every check passed (warnings allowed); 2 configuration; 3 the setup is wrong (archiving
off or not through walship, a repository of another cluster, the switched segment not archived in
time); 4 the probe read back other bytes; 5 storage unreachable or not writable; 6 PostgreSQL
unreachable. The first failing check decides.
`,
    )
    .addHelpText('after', settingsHelp(['storage', 'storageTimeout', 'pghost', 'pgport', 'pguser', 'pgdatabase', 'pgpassword', 'logFormat', 'logLevel'], settings));
  command.action(
    action('check', async (ctx) => {
      const flags = command.opts<{ json?: boolean; switchWal?: boolean; timeout: string; cluster: boolean }>();
      const { runCheck } = await import('../retention/health.ts');
      const { formatCheck } = await import('../retention/format.ts');
      const { usageError } = await import('../errors.ts');
      const timeout = Number(flags.timeout);
      if (!Number.isFinite(timeout) || timeout <= 0) throw usageError(`--timeout ${flags.timeout}: expected seconds`);
      const c = ctx.config;
      const report = await runCheck({
        storage: await ctx.storage(),
        configDescription: `${c.configPath ? `config file ${c.configPath}` : 'no config file (environment only)'}; storage ${c.storage ?? '(unset)'}`,
        connection: { host: c.pghost, port: c.pgport, user: c.pguser, database: c.pgdatabase, password: c.pgpassword },
        cluster: flags.cluster,
        switchWal: Boolean(flags.switchWal),
        switchWalTimeoutMs: timeout * 1000,
      });
      process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatCheck(report));
      return report.exitCode;
    }),
  );
}
