// Bundle the CLI into dist/: commander and zod are inlined (wal-push starts once per segment, and
// loading them as hundreds of small modules costs tens of milliseconds); native addons and cloud
// SDKs stay external and are imported lazily by the code that needs them.
import { build } from 'esbuild';
import { renameSync, rmSync } from 'node:fs';

// Build beside dist/ and swap it in at the end, so a rebuild never leaves running archive
// commands (or tests) without a CLI, and a failed build leaves the previous one in place.
const dist = new URL('../dist', import.meta.url);
const next = new URL('../dist.next', import.meta.url);
const old = new URL('../dist.old', import.meta.url);
rmSync(next, { recursive: true, force: true });
await build({
  // wal: the fast entry for wal-push/wal-fetch as PostgreSQL runs them (src/cli/wal-entry.ts).
  // fetch-worker: backup-fetch's worker thread (src/backup/workers.ts), loaded by URL.
  // lz4-worker: compresses lz4 frames for backup-push (src/codec/lz4-worker.ts), loaded by URL.
  // hash-worker: a fetch worker's hashing thread (src/backup/hashes.ts), loaded by URL.
  entryPoints: { cli: 'src/cli/entry.ts', wal: 'src/cli/wal-entry.ts', 'fetch-worker': 'src/backup/fetch-worker.ts', 'lz4-worker': 'src/codec/lz4-worker.ts', 'hash-worker': 'src/backup/hash-worker.ts' },
  outdir: 'dist.next',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  chunkNames: 'chunks/[name]-[hash]',
  external: ['zstd-napi', 'lz4-napi', 'pg', 'pg-native', '@aws-sdk/*', '@smithy/*', '@google-cloud/*', '@azure/*', 'prom-client', 'cli-progress'],
  banner: { js: "import { createRequire as __walshipRequire } from 'node:module'; const require = __walshipRequire(import.meta.url);" },
  sourcemap: 'linked',
  legalComments: 'none',
  logLevel: 'warning',
});
rmSync(old, { recursive: true, force: true });
try {
  renameSync(dist, old);
} catch {
  // no previous build
}
renameSync(next, dist);
rmSync(old, { recursive: true, force: true });
