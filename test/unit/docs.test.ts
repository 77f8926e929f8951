import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

test('the README settings table matches src/config/settings.ts', () => {
  const run = spawnSync(process.execPath, ['scripts/docs.ts', '--check'], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
});
