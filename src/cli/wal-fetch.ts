import type { Command } from 'commander';
import { basename, resolve } from 'node:path';
import { action, settingsHelp, type CommandContext } from './context.ts';
import { settings } from '../config/settings.ts';
import { ExitCode } from '../errors.ts';
import { log } from '../log.ts';

/**
 * Under recovery PostgreSQL ends recovery when restore_command fails with a status it reads as
 * "file not there" (1..125), which on a real failure would fork a timeline early. So every
 * failure other than "not found" exits 128 + code: PostgreSQL treats a status above 125 as fatal.
 */
export const recoveryFailureOffset = 128;

/** What `wal-fetch <name> <dest>` does, once settings are loaded (also run by the fast entry, wal-entry.ts). */
export async function walFetch(ctx: CommandContext, name: string, dest: string): Promise<number | void> {
  const config = ctx.config;
  if (config.daemonSocket) {
    const { handOver, DaemonNotFound } = await import('../daemon/hand-over.ts');
    try {
      if (await handOver(config, { op: 'fetch', name, dest: resolve(dest) })) return;
    } catch (err) {
      if (!(err instanceof DaemonNotFound)) throw err;
      log.debug('not in the archive', { file: name });
      return ExitCode.notFound;
    }
  }
  const { fetchForRecovery } = await import('../wal/fetch.ts');
  const { isNotFound } = await import('../storage/storage.ts');
  try {
    await fetchForRecovery(name, dest, { storage: await ctx.storage(), encryption: await ctx.encryption(), wholeFile: true }, {
      depth: config.prefetch,
      waitMs: config.storageTimeout * 1000,
      startPrefetcher: (walDir, first, segmentSize) => spawnPrefetcher(config.configPath, walDir, first, segmentSize),
    });
  } catch (err) {
    if (!isNotFound(err)) throw err;
    log.debug('not in the archive', { file: name });
    return ExitCode.notFound;
  }
}

/** The action with wal-fetch's exit-code rules (standby: "not there yet"; under recovery: above 125). */
export function walFetchAction(flags: { standby?: boolean | undefined; recovery?: boolean | undefined }, destination: string) {
  return action(
    'wal-fetch',
    (ctx, name: string, dest: string) => walFetch(ctx, name, dest),
    {
      exitCodeFor(_err, code) {
        if (flags.standby) {
          log.warn('reporting the failure as "not there yet" to the standby, which will retry');
          return ExitCode.notFound;
        }
        const underRecovery = flags.recovery || basename(destination).startsWith('RECOVERY');
        return underRecovery ? recoveryFailureOffset + code : code;
      },
    },
  );
}

export function register(program: Command): void {
  program
    .command('wal-fetch')
    .description("restore one WAL file (restore_command = 'walship wal-fetch %f %p'); exit 1 when the archive does not have it")
    .argument('<name>', 'the WAL file name PostgreSQL asks for (%f)')
    .argument('<dest>', 'where to write it (%p)')
    .option('--standby', 'running for a standby: report failures as "not there yet" (exit 1) after logging them, so the standby retries')
    .option('--recovery', 'treat failures as fatal for recovery (exit above 125); implied when <dest> is pg_wal/RECOVERY*')
    .addHelpText('after', settingsHelp(['storage', 'identityFile', 'passphraseFile', 'prefetch', 'downloadConcurrency', 'daemonSocket', 'storageTimeout', 'logFormat', 'logLevel'], settings))
    .addHelpText('after', `\nExit codes: 0 restored; 1 not in the archive; under recovery any other failure exits ${recoveryFailureOffset} + its code (e.g. 132 corrupt object, 133 storage down) so PostgreSQL stops instead of ending recovery early.\n`)
    .action(async (name: string, dest: string, flags: { standby?: boolean; recovery?: boolean }, command: Command) =>
      walFetchAction(flags, dest)(name, dest, flags, command),
    );
  registerPrefetcher(program);
}

/**
 * Start the prefetcher as a detached process (PostgreSQL waits only for this one), with the same
 * environment and config file. Its output goes nowhere: whoever ran wal-fetch may be waiting for
 * its stderr to close; a prefetch failure only means wal-fetch fetches that file itself later.
 */
async function spawnPrefetcher(configPath: string | undefined, walDir: string, name: string, segmentSize: number): Promise<void> {
  const launcher = process.argv[1];
  if (!launcher) return;
  const { spawn } = await import('node:child_process');
  const args = [launcher, ...(configPath ? ['--config', resolve(configPath)] : []), 'wal-prefetch', resolve(walDir), name, String(segmentSize)];
  try {
    spawn(process.execPath, args, { detached: true, stdio: 'ignore', cwd: '/' }).unref();
  } catch (err) {
    log.debug('cannot start the prefetcher', { error: (err as Error).message });
  }
}

/** The hidden `wal-prefetch` command: the detached prefetcher process of one pg_wal. */
export function registerPrefetcher(program: Command): void {
  program
    .command('wal-prefetch', { hidden: true })
    .description('(internal) fetch the segments after <name> into <pg_wal>/walship/prefetch until recovery stops asking')
    .argument('<pg_wal>')
    .argument('<name>')
    .argument('<segment-size>')
    .action(
      action('wal-prefetch', async (ctx, walDir: string, name: string, segmentSize: string) => {
        const { Prefetcher } = await import('../wal/prefetch.ts');
        const { fetchWalFile } = await import('../wal/fetch.ts');
        const { isNotFound } = await import('../storage/storage.ts');
        const fetchCtx = { storage: await ctx.storage(), encryption: await ctx.encryption(), wholeFile: true };
        let stopped!: () => void;
        const done = new Promise<void>((r) => (stopped = r));
        const prefetcher = new Prefetcher(walDir, {
          depth: ctx.config.prefetch,
          concurrency: ctx.config.downloadConcurrency,
          idleMs: 60_000,
          fetch: (n, dest) => fetchWalFile(n, dest, fetchCtx),
          isNotFound,
          onStop: stopped,
        });
        if (!(await prefetcher.start())) return; // another one runs for this pg_wal
        for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.once(signal, () => void prefetcher.stop());
        prefetcher.hint(name, Number(segmentSize));
        await done;
      }),
    );
}
