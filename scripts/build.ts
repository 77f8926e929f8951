// Bundle the CLI into dist/: commander and zod are inlined (wal-push starts once per segment, and
// loading them as hundreds of small modules costs tens of milliseconds); native addons and cloud
// SDKs stay external and are imported lazily by the code that needs them.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';

rmSync(new URL('../dist', import.meta.url), { recursive: true, force: true });
await build({
  // wal: the fast entry for wal-push/wal-fetch as PostgreSQL runs them (src/cli/wal-entry.ts).
  entryPoints: { cli: 'src/cli/entry.ts', wal: 'src/cli/wal-entry.ts' },
  outdir: 'dist',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  chunkNames: 'chunks/[name]-[hash]',
  external: ['zstd-napi', 'lz4-napi', 'pg', 'pg-native', '@aws-sdk/*', '@smithy/*', '@google-cloud/*', '@azure/*', 'prom-client', 'cli-progress', 'tar-stream'],
  banner: { js: "import { createRequire as __walshipRequire } from 'node:module'; const require = __walshipRequire(import.meta.url);" },
  sourcemap: 'linked',
  legalComments: 'none',
  logLevel: 'warning',
});
