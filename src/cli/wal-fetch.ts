import type { Command } from 'commander';
import { basename } from 'node:path';
import { action, settingsHelp } from './context.ts';
import { settings } from '../config/settings.ts';
import { ExitCode } from '../errors.ts';
import { log } from '../log.ts';

/**
 * Under recovery PostgreSQL ends recovery when restore_command fails with a status it reads as
 * "file not there" (1..125), which on a real failure would fork a timeline early. So every
 * failure other than "not found" exits 128 + code: PostgreSQL treats a status above 125 as fatal.
 */
export const recoveryFailureOffset = 128;

export function register(program: Command): void {
  program
    .command('wal-fetch')
    .description("restore one WAL file (restore_command = 'walship wal-fetch %f %p'); exit 1 when the archive does not have it")
    .argument('<name>', 'the WAL file name PostgreSQL asks for (%f)')
    .argument('<dest>', 'where to write it (%p)')
    .option('--standby', 'running for a standby: report failures as "not there yet" (exit 1) after logging them, so the standby retries')
    .option('--recovery', 'treat failures as fatal for recovery (exit above 125); implied when <dest> is pg_wal/RECOVERY*')
    .addHelpText('after', settingsHelp(['storage', 'identityFile', 'passphraseFile', 'storageTimeout', 'logFormat', 'logLevel'], settings))
    .addHelpText('after', `\nExit codes: 0 restored; 1 not in the archive; under recovery any other failure exits ${recoveryFailureOffset} + its code (e.g. 132 corrupt object, 133 storage down) so PostgreSQL stops instead of ending recovery early.\n`)
    .action(
      action(
        'wal-fetch',
        async (ctx, name: string, dest: string) => {
          const { fetchWalFile } = await import('../wal/fetch.ts');
          const { isNotFound } = await import('../storage/storage.ts');
          try {
            await fetchWalFile(name, dest, { storage: await ctx.storage(), encryption: await ctx.encryption() });
          } catch (err) {
            if (!isNotFound(err)) throw err;
            log.debug('not in the archive', { file: name });
            return ExitCode.notFound;
          }
        },
        {
          exitCodeFor(_err, code) {
            const flags = program.commands.find((c) => c.name() === 'wal-fetch')!.opts();
            if (flags.standby) {
              log.warn('reporting the failure as "not there yet" to the standby, which will retry');
              return ExitCode.notFound;
            }
            const dest = program.commands.find((c) => c.name() === 'wal-fetch')!.args[1] ?? '';
            const underRecovery = flags.recovery || basename(dest).startsWith('RECOVERY');
            return underRecovery ? recoveryFailureOffset + code : code;
          },
        },
      ),
    );
}
