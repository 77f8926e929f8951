/**
 * Real WAL for the benchmarks: a PostgreSQL 15 cluster runs a pgbench workload and archives with
 * `cp`, and the first N complete 16 MiB segments written after the pgbench data load are kept.
 * `--segments-dir DIR` reuses segments from an earlier run (or any directory of real segments).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeServerOwnedDir, startCluster, type Cluster } from '../test/helpers/pg-cluster.ts';
import { segmentNumber } from '../src/pg/wal-names.ts';

const segmentRe = /^[0-9A-F]{24}$/;

/** The full-size segment files in `dir`, sorted. */
export function listSegments(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((f) => segmentRe.test(f) && fs.statSync(path.join(dir, f)).size === 16 * 1024 * 1024)
    .sort();
}

export interface MadeSegments {
  dir: string;
  names: string[];
  systemIdentifier: string;
}

/**
 * Make (or reuse) `count` real segments of pgbench WAL. The segments of the initial data load
 * (`pgbench -i`, mostly COPY + index builds) are skipped: the workload is pgbench's TPC-B-like
 * transactions, as an archiver sees it on a busy server.
 */
export async function makeSegments(count: number, reuseDir?: string, log: (s: string) => void = () => {}): Promise<MadeSegments> {
  if (reuseDir && fs.existsSync(path.join(reuseDir, 'pg_control')) && listSegments(reuseDir).length >= count) {
    const names = listSegments(reuseDir).slice(-count);
    return { dir: reuseDir, names, systemIdentifier: 'reused' };
  }
  const archive = await makeServerOwnedDir('walship-bench-wal-');
  const c: Cluster = await startCluster({
    major: 15,
    settings: {
      archive_mode: 'on',
      archive_command: `test ! -f '${archive}/%f' && cp %p '${archive}/%f'`,
      wal_level: 'replica',
      max_wal_size: '4GB',
      checkpoint_timeout: '30min',
      full_page_writes: 'on',
      synchronous_commit: 'off',
    },
  });
  try {
    log(`making ${count} segments of pgbench WAL on PostgreSQL 15`);
    await c.pgbench(['-i', '-s', '10', '-q'], { timeoutMs: 600_000 });
    await c.sql('CHECKPOINT');
    const start = await c.sql('SELECT pg_walfile_name(pg_switch_wal())');
    // TPC-B transactions with a checkpoint every second: most WAL is then full-page images plus
    // row changes, as on a busy server right after checkpoints (plain TPC-B alone writes WAL at a
    // few hundred KB/s here, far too slowly to make segments for a benchmark).
    for (let round = 0; round < 200; round++) {
      let running = true;
      const checkpoints = (async () => {
        while (running) {
          await c.sql('CHECKPOINT').catch(() => {});
          await new Promise((r) => setTimeout(r, 1000));
        }
      })();
      await c.pgbench(['-c', '4', '-j', '2', '-T', '5'], { timeoutMs: 120_000 });
      running = false;
      await checkpoints;
      const lsn = await c.sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
      const written = Number(segmentNumber(lsn.slice(8), 16 << 20) - segmentNumber(start.slice(8), 16 << 20));
      log(`  ${written} segments so far`);
      if (written > count + 2) break;
    }
    await c.sql('SELECT pg_switch_wal()');
    await c.waitFor("SELECT count(*) = 0 FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'", 't', 120_000);
    const names = listSegments(archive)
      .filter((n) => n > start)
      .slice(0, count);
    if (names.length < count) throw new Error(`only ${names.length} segments were written`);
    const systemIdentifier = await c.sql('SELECT system_identifier FROM pg_control_system()');
    await c.stop();
    // pgBackRest reads pg_control from its pg1-path; walship's prefetch checks the system identifier.
    fs.copyFileSync(path.join(c.dataDir, 'global', 'pg_control'), path.join(archive, 'pg_control'));
    let dir = archive;
    if (reuseDir) {
      fs.mkdirSync(reuseDir, { recursive: true });
      for (const n of [...names, 'pg_control']) fs.copyFileSync(path.join(archive, n), path.join(reuseDir, n));
      dir = reuseDir;
    }
    return { dir, names, systemIdentifier };
  } finally {
    await c.remove();
  }
}
