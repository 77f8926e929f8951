import type { Command } from 'commander';
import { action, settingsHelp } from './context.ts';
import { settings } from '../config/settings.ts';

export function register(program: Command): void {
  const command = program
    .command('status')
    .description('repository health for monitoring: newest backup age, archive lag, repository size')
    .option('--json', 'one JSON object on stdout (fields documented in the README)')
    .option('--no-cluster', 'do not connect to PostgreSQL (no archive lag)')
    .addHelpText(
      'after',
      `
JSON fields (times ISO 8601, sizes in bytes, ages in seconds):
  repository.{location, systemIdentifier, pgMajor, encrypted, objects, bytes, walBytes, backupBytes, dumpBytes}
  backups.{count, permanent, incomplete, newest.{name, startTime, stopTime, ageSeconds}, oldest.{name, startTime}}
  wal.{segments, timeline, newestSegment, newestArchivedAt, newestAgeSeconds, gaps}
  cluster: null with --no-cluster; {reachable: false, error} when PostgreSQL cannot be reached; else
    {reachable: true, systemIdentifierMatches, inRecovery, currentWalFile, currentLsn,
     archiveLagSegments, archiveLagBytes, lastArchivedWal, lastArchivedTime, failedCount,
     lastFailedWal, lastFailedTime}
archiveLagSegments counts complete segments not yet in the repository (0 when archiving keeps up).
Exit code 0 whenever the report could be made; judge the fields in the monitoring check.
`,
    )
    .addHelpText('after', settingsHelp(['storage', 'identityFile', 'passphraseFile', 'storageTimeout', 'pghost', 'pgport', 'pguser', 'pgdatabase', 'pgpassword', 'logFormat', 'logLevel'], settings));
  command.action(
    action('status', async (ctx) => {
      const flags = command.opts<{ json?: boolean; cluster: boolean }>();
      const { collectStatus } = await import('../retention/health.ts');
      const { formatStatus } = await import('../retention/format.ts');
      const c = ctx.config;
      const report = await collectStatus({
        storage: await ctx.storage(),
        encryption: await ctx.encryption(),
        connection: flags.cluster ? { host: c.pghost, port: c.pgport, user: c.pguser, database: c.pgdatabase, password: c.pgpassword } : undefined,
      });
      process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatStatus(report));
    }),
  );
}
