import type { Command } from 'commander';
import { resolve } from 'node:path';
import { action, settingsHelp, type CommandContext } from './context.ts';
import { settings } from '../config/settings.ts';

export function register(program: Command): void {
  program
    .command('wal-push')
    .description('archive one WAL file (archive_command = \'walship wal-push %p\'); exit 0 only once it is durable')
    .argument('<path>', 'the WAL file PostgreSQL asks to archive (%p)')
    .option('--allow-unencrypted', 'store it unencrypted even if the repository is encrypted (WALSHIP_ALLOW_UNENCRYPTED)')
    .addHelpText('after', settingsHelp(['storage', 'compression', 'compressionLevel', 'recipients', 'recipientsFile', 'passphraseFile', 'passphraseWorkFactor', 'identityFile', 'allowUnencrypted', 'lookahead', 'uploadConcurrency', 'daemonSocket', 'storageTimeout', 'logFormat', 'logLevel'], settings))
    .action(async (path: string, ...rest: unknown[]) => {
      // A lookahead (or the daemon) already made this file durable: exit 0 before loading anything.
      // (bin/walship does the same check in sh, before Node starts; this covers other launchers.)
      const { consumeMarker, destinationTag } = await import('../wal/lookahead.ts');
      const configArg = (rest[rest.length - 1] as Command).optsWithGlobals().config as string | undefined;
      if (await consumeMarker(path, destinationTag(configArg))) process.exit(0);
      await walPushAction(path, ...rest);
    });
}

/** What `wal-push <path>` does, once settings are loaded (also run by the fast entry, wal-entry.ts). */
export async function walPush(ctx: CommandContext, path: string): Promise<void> {
  const config = ctx.config;
  const { destinationTag, pushWithLookahead } = await import('../wal/lookahead.ts');
  if (config.daemonSocket) {
    const { handOver } = await import('../daemon/hand-over.ts');
    if (await handOver(config, { op: 'push', path: resolve(path), tag: destinationTag(ctx.configArg) })) return;
  }
  // Started together, so their modules load side by side (the age module and the recipients'
  // parsing are a good part of an encrypted push's start-up).
  const [{ pushWalFile }, storage, encode, encryption] = await Promise.all([import('../wal/push.ts'), ctx.storage(), ctx.encodeOptions(), ctx.encryption()]);
  const pushCtx = {
    storage,
    encode,
    encryption,
    allowUnencrypted: config.allowUnencrypted,
    // One process per call: reading and compressing the file in one go is faster than streams.
    wholeFile: true,
  };
  const push = (file: string) => pushWalFile(file, pushCtx);
  if (config.lookahead > 0) {
    await pushWithLookahead(path, push, { lookahead: config.lookahead, concurrency: config.uploadConcurrency, tag: destinationTag(ctx.configArg) });
  }
  else await push(path);
}

export const walPushAction = action('wal-push', walPush, {
  overrides: (flags) => ({ allowUnencrypted: flags.allowUnencrypted ? true : undefined }),
});
