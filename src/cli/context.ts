import type { Command } from 'commander';
import { ExitCode, oneLine, WalshipError, type ExitCodeValue } from '../errors.ts';
import { configureLog, log } from '../log.ts';
import type { Config, SettingKey } from '../config/settings.ts';
import type { Storage } from '../storage/storage.ts';
import type { EncodeOptions, Encryption } from '../codec/codec.ts';

/** What a command's action gets: validated settings and lazily opened resources. */
export interface CommandContext {
  config: Config & { configPath?: string | undefined };
  /** --config as given on the command line (not the default path). */
  configArg?: string | undefined;
  storage(): Promise<Storage>;
  encodeOptions(): Promise<EncodeOptions>;
  /** Decryption (and encryption) as configured; undefined when no key setting is present. */
  encryption(): Promise<Encryption | undefined>;
}

export interface ActionOptions {
  /** Map a failure to a different exit code (wal-fetch under recovery). */
  exitCodeFor?: (err: unknown, code: ExitCodeValue) => number;
  /** Flags on this command that override settings. */
  overrides?: (options: Record<string, unknown>) => Partial<Record<SettingKey, unknown>>;
}

/** The settings each command reads, listed in its --help (generated from the settings declaration). */
export function settingsHelp(keysUsed: readonly SettingKey[], declarations: Record<SettingKey, { env: string; doc: string }>): string {
  const width = Math.max(...keysUsed.map((k) => declarations[k].env.length));
  return `\nSettings (environment variable, or the config file key in parentheses):\n${keysUsed
    .map((k) => `  ${declarations[k].env.padEnd(width)}  (${k}) ${declarations[k].doc}`)
    .join('\n')}\n`;
}

/**
 * Wrap a command's work: load and validate settings first (exit 2 before anything is touched),
 * then run; any failure ends as one line on stderr and a documented exit code.
 */
export function action<A extends unknown[]>(
  name: string,
  work: (ctx: CommandContext, ...args: A) => Promise<number | void>,
  options: ActionOptions = {},
) {
  return async (...args: unknown[]): Promise<void> => {
    const command = args[args.length - 1] as Command;
    const flags = command.optsWithGlobals();
    configureLog({ command: name });
    let code: number;
    try {
      const { loadConfig, requireStorage } = await import('../config/load.ts');
      const config = loadConfig({ configPath: flags.config as string | undefined, overrides: options.overrides?.(flags) });
      configureLog({ level: config.logLevel, format: config.logFormat });
      let storage: Storage | undefined;
      let encryption: Promise<Encryption | undefined> | undefined;
      const ctx: CommandContext = {
        config,
        configArg: flags.config as string | undefined,
        async storage() {
          if (!storage) {
            const { parseStorageUrl } = await import('../config/storage-url.ts');
            const { openStorage } = await import('../storage/open.ts');
            storage = await openStorage(parseStorageUrl(requireStorage(config), 'setting storage (WALSHIP_STORAGE)'), {
              timeoutSeconds: config.storageTimeout,
            });
          }
          return storage;
        },
        encryption() {
          encryption ??= import('../codec/keys.ts').then((m) => m.encryptionFromConfig(config));
          return encryption;
        },
        async encodeOptions() {
          return { compression: config.compression, level: config.compressionLevel, encryption: await ctx.encryption() };
        },
      };
      code = (await work(ctx, ...(args.slice(0, -2) as A))) ?? ExitCode.ok;
      await storage?.close?.();
    } catch (err) {
      const exit = err instanceof WalshipError ? err.exitCode : ExitCode.storage;
      if (!(err instanceof WalshipError)) log.debug('unexpected failure', { stack: (err as Error)?.stack });
      log.error(oneLine(err));
      code = options.exitCodeFor ? options.exitCodeFor(err, exit) : exit;
    }
    process.exit(code);
  };
}
