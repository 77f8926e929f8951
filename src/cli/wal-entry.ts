/**
 * The fast entry for the two commands PostgreSQL runs once per WAL file, in the exact forms it
 * runs them: `[--config FILE] wal-push <path>` and `[--config FILE] wal-fetch <name> <dest>`.
 * It skips commander and the other commands' registration (~15 ms of a ~100 ms wal-push) and runs
 * the same actions as the full CLI (same settings, same exit codes). Anything else (flags, --help,
 * other commands) goes to the full CLI (entry.ts). bin/launch.mjs picks this entry.
 */
import type { Command } from 'commander';

const args = process.argv.slice(2);
let configPath: string | undefined;
let rest = args;
if ((args[0] === '--config' || args[0] === '-c') && args.length >= 2) {
  configPath = args[1];
  rest = args.slice(2);
}
const plain = (arg: string | undefined): arg is string => arg !== undefined && arg !== '' && !arg.startsWith('-');
/** What action() reads from commander: the global --config. */
const command = { optsWithGlobals: () => ({ config: configPath }) } as unknown as Command;

if (rest[0] === 'wal-push' && rest.length === 2 && plain(rest[1])) {
  const { consumeMarker, destinationTag } = await import('../wal/lookahead.ts');
  if (await consumeMarker(rest[1], destinationTag(configPath))) process.exit(0);
  const { walPushAction } = await import('./wal-push.ts');
  await walPushAction(rest[1], {}, command);
} else if (rest[0] === 'wal-fetch' && rest.length === 3 && plain(rest[1]) && plain(rest[2])) {
  const { walFetchAction } = await import('./wal-fetch.ts');
  await walFetchAction({}, rest[2])(rest[1], rest[2], {}, command);
} else {
  await import('./entry.ts');
}
