import type { Command } from 'commander';
import { action, settingsHelp } from './context.ts';
import { settings } from '../config/settings.ts';

export function register(program: Command): void {
  program
    .command('wal-push')
    .description('archive one WAL file (archive_command = \'walship wal-push %p\'); exit 0 only once it is durable')
    .argument('<path>', 'the WAL file PostgreSQL asks to archive (%p)')
    .option('--allow-unencrypted', 'store it unencrypted even if the repository is encrypted (WALSHIP_ALLOW_UNENCRYPTED)')
    .addHelpText('after', settingsHelp(['storage', 'compression', 'compressionLevel', 'recipients', 'recipientsFile', 'passphraseFile', 'passphraseWorkFactor', 'identityFile', 'allowUnencrypted', 'storageTimeout', 'logFormat', 'logLevel'], settings))
    .action(
      action('wal-push', async (ctx, path: string) => {
        const { pushWalFile } = await import('../wal/push.ts');
        await pushWalFile(path, { storage: await ctx.storage(), encode: await ctx.encodeOptions(), encryption: await ctx.encryption(), allowUnencrypted: ctx.config.allowUnencrypted });
      }, { overrides: (flags) => ({ allowUnencrypted: flags.allowUnencrypted ? true : undefined }) }),
    );
}
