// Turn on V8's compile cache (per user: the archiver runs as the postgres user) before loading the CLI.
import module from 'node:module';
import { tmpdir } from 'node:os';

module.enableCompileCache?.(`${tmpdir()}/walship-compile-cache-${process.getuid?.() ?? 'user'}`);
await import('../dist/cli.js');
