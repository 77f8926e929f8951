/**
 * bin/walship, the launcher PostgreSQL's archive_command runs: it starts Node without V8's
 * background compilers, which made some runs hang for good at exit (nodejs/node#54918; 6 in 1600
 * runs of backup-list, 4 at once), and Node accepts the flags.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const launcher = fileURLToPath(new URL('../../bin/walship', import.meta.url));

test('bin/walship starts node without background compilation, and node runs with the flags', () => {
  const exec = readFileSync(launcher, 'utf8').split('\n').filter((line) => /^exec .*launch\.mjs/.test(line));
  assert.deepEqual(exec, ['exec "$node" --no-concurrent-sparkplug --no-concurrent-recompilation "$bin/launch.mjs" "$@"']);
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.equal(execFileSync(launcher, ['--version'], { encoding: 'utf8' }).trim(), pkg.version);
});
