// Turn on V8's compile cache (per user: the archiver runs as the postgres user) before loading the CLI.
import module from 'node:module';
import { tmpdir } from 'node:os';

module.enableCompileCache?.(`${tmpdir()}/walship-compile-cache-${process.getuid?.() ?? 'user'}`);
// wal-push/wal-fetch (once per WAL file) start through a leaner entry that skips commander.
const argv = process.argv.slice(2);
const walCommand = argv[0] === 'wal-push' || argv[0] === 'wal-fetch' || ((argv[0] === '--config' || argv[0] === '-c') && (argv[2] === 'wal-push' || argv[2] === 'wal-fetch'));
await import(walCommand ? '../dist/wal.js' : '../dist/cli.js');
