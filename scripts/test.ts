// `npm test`: build the CLI the tests drive, then run every test file with Node's own runner.
// Integration tests mostly wait on PostgreSQL and child processes, so run a few files at once.
import { spawnSync } from 'node:child_process';

const node = process.execPath;
const build = spawnSync(node, ['scripts/build.ts'], { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);

const patterns = process.argv.slice(2).length ? process.argv.slice(2) : ['test/**/*.test.ts'];
const run = spawnSync(node, ['--test', '--test-concurrency=3', '--test-reporter=spec', ...patterns], { stdio: 'inherit' });
process.exit(run.status ?? 1);
