import { Command, CommanderError } from 'commander';
import { settings } from '../config/settings.ts';
import { configEnv, defaultConfigPath } from '../config/settings.ts';
import { ExitCode } from '../errors.ts';
import { version } from '../version.ts';
import { commands } from './commands.ts';

const exitCodesHelp = `
Exit codes:
  0  done
  1  wal-fetch: no such WAL file in the archive
  2  usage or configuration error (nothing was touched)
  3  refused (conflicting WAL, non-empty target, unreachable recovery target, foreign repository)
  4  integrity (checksum, decryption, corrupt object)
  5  storage unavailable after retries
  6  PostgreSQL error`;

function settingsTable(): string {
  const rows = Object.entries(settings).map(([key, s]) => `  ${s.env.padEnd(28)} ${key.padEnd(20)} ${s.doc}`);
  return `
Settings come from the JSON config file (--config, ${configEnv}, or ${defaultConfigPath}) and the
environment, which wins:
  ${'environment variable'.padEnd(28)} ${'config key'.padEnd(20)} meaning
${rows.join('\n')}`;
}

export function buildProgram(): Command {
  const program = new Command('walship')
    .description('PostgreSQL WAL archiving, base backups and point-in-time recovery into file, S3, GCS or Azure storage')
    .version(version, '-V, --version')
    .option('-c, --config <file>', `JSON config file (default: $${configEnv} or ${defaultConfigPath})`)
    .showHelpAfterError('(walship --help lists commands and settings)')
    .addHelpText('after', `${settingsTable()}\n${exitCodesHelp}\n`)
    .exitOverride();
  for (const command of commands) command.register(program);
  for (const sub of program.commands) sub.exitOverride();
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with code 0; parse errors were already printed.
      process.exit(err.exitCode === 0 ? ExitCode.ok : ExitCode.usage);
    }
    throw err;
  }
}
