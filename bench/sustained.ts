/**
 * Archive lag under load: a PostgreSQL 15 cluster runs pgbench at full speed with each archiver in
 * turn; the number of `.ready` files in pg_wal/archive_status (segments written, not yet archived)
 * is sampled every 200 ms. Reported: peak and mean backlog, segments written, time to drain after
 * pgbench stops, and pgbench's tps (the archiver competes with the database for the 2 cores).
 * pgbench runs with a CHECKPOINT every second, so WAL comes at several segments per second.
 * Then a bulk load (`pgbench -i`, scale 15 quick / 50 full) writes WAL as fast as the machine can,
 * and the peak backlog and the time to drain it after the load are reported too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ensurePostgresCanReach, makeServerOwnedDir, serverUser, startCluster, type Cluster } from '../test/helpers/pg-cluster.ts';
import { cleanEnv, walshipBin, walshipRoot, type BenchContext } from './lib.ts';
import { segmentNumber } from '../src/pg/wal-names.ts';
import { setupPgBackRest } from './pgbackrest.ts';

/** Segment number of a 16 MiB segment's file name. */
const segNo = (name: string) => segmentNumber(name.slice(8), 16 * 1024 * 1024);

const SECTION = 'sustained: pgbench at full speed, archive lag (.ready files)';
const LOAD_SECTION = 'sustained: bulk load (pgbench -i), archive lag (.ready files)';

interface Variant {
  name: string;
  /** Set up the archiver; returns archive_command, extra server env, and a teardown. */
  setup(dir: string, dataDir: () => string): Promise<{ command: string; env: Record<string, string>; afterStart?: (c: Cluster) => Promise<void>; teardown?: () => Promise<void> }>;
}

export async function run(ctx: BenchContext): Promise<void> {
  const seconds = ctx.quick ? 20 : 120;
  const loadScale = ctx.quick ? 15 : 50;
  const user = serverUser();
  ensurePostgresCanReach(path.join(walshipRoot, 'bin'));
  ensurePostgresCanReach(fs.realpathSync(path.join(walshipRoot, 'node_modules', 'node', 'bin')));
  const variants: Variant[] = [
    {
      name: 'walship wal-push, one process per segment (lookahead 0)',
      setup: async (dir) => ({ command: `${walshipBin} wal-push %p`, env: { WALSHIP_STORAGE: `file://${dir}/repo`, WALSHIP_LOOKAHEAD: '0' } }),
    },
    {
      name: 'walship wal-push, lookahead 16, 2 parallel (default)',
      setup: async (dir) => ({ command: `${walshipBin} wal-push %p`, env: { WALSHIP_STORAGE: `file://${dir}/repo` } }),
    },
    {
      name: 'walship via daemon (2 parallel)',
      setup: async (dir) => {
        const socket = path.join(dir, 'd.sock');
        const env = { WALSHIP_STORAGE: `file://${dir}/repo`, WALSHIP_DAEMON_SOCKET: socket, WALSHIP_METRICS_ADDRESS: 'off' };
        let daemon: ChildProcess | undefined;
        return {
          command: `${walshipBin} wal-push %p`,
          env,
          afterStart: async (c) => {
            daemon = spawn(walshipBin, ['daemon', '--pgdata', c.dataDir], { env: cleanEnv(env), stdio: 'ignore', uid: user.uid, gid: user.gid, cwd: '/' });
            for (let i = 0; i < 100 && !fs.existsSync(socket); i++) await sleep(100);
          },
          teardown: async () => {
            if (!daemon || daemon.exitCode !== null) return;
            const exited = new Promise((r) => daemon!.once('exit', r));
            daemon.kill('SIGTERM');
            await Promise.race([exited, sleep(30_000)]);
          },
        };
      },
    },
    {
      name: 'pgBackRest archive-push async, zst-1, process-max 2',
      setup: async (dir, dataDir) => {
        const pgbr = setupPgBackRest(path.join(dir, 'pgbr'), dataDir(), { compressType: 'zst', compressLevel: 1, async: true, processMax: 2, owner: user });
        return { command: `pgbackrest ${pgbr.args('archive-push', '%p').join(' ')}`, env: {} };
      },
    },
  ];

  for (const variant of variants) {
    ctx.log(`  ${variant.name}: ${seconds} s of pgbench`);
    const dir = await makeServerOwnedDir('walship-bench-sus-');
    // The cluster is made first (archiving to /bin/true), so the archiver set-up can read its pg_control.
    const c = await startCluster({
      major: 15,
      settings: { archive_mode: 'on', archive_command: '/bin/true', wal_level: 'replica', max_wal_size: '2GB', checkpoint_timeout: '30min' },
    });
    let teardown: (() => Promise<void>) | undefined;
    try {
      await c.pgbench(['-i', '-s', '10', '-q'], { timeoutMs: 600_000 });
      await c.sql('CHECKPOINT');
      fs.mkdirSync(path.join(dir, 'repo'));
      fs.chownSync(path.join(dir, 'repo'), user.uid, user.gid);
      const setup = await variant.setup(dir, () => c.dataDir);
      teardown = setup.teardown;
      // The archive command runs in the server's environment: restart it with the archiver's.
      await c.stop();
      const { appendSettings } = await import('../test/helpers/pg-cluster.ts');
      await appendSettings(c.dataDir, { archive_command: setup.command });
      await restartWithEnv(c, setup.env);
      await setup.afterStart?.(c);
      const status = path.join(c.dataDir, 'pg_wal', 'archive_status');
      const countReady = () => fs.readdirSync(status).filter((f) => f.endsWith('.ready')).length;
      const startSeg = await c.sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
      let peak = 0;
      let samples = 0;
      let total = 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const n = countReady();
          peak = Math.max(peak, n);
          total += n;
          samples++;
          await sleep(200);
        }
      })();
      // A checkpoint every second keeps full-page images coming: several segments per second here,
      // more than one process per segment can archive, as on a busy server.
      let loading = true;
      const checkpoints = (async () => {
        while (loading) {
          await c.sql('CHECKPOINT').catch(() => {});
          await sleep(1000);
        }
      })();
      const bench = await c.pgbench(['-c', '4', '-j', '2', '-T', String(seconds)], { timeoutMs: (seconds + 120) * 1000 });
      loading = false;
      await checkpoints;
      const endSeg = await c.sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
      const drainStart = Date.now();
      while (countReady() > 0 && Date.now() - drainStart < 300_000) await sleep(200);
      const drain = (Date.now() - drainStart) / 1000;
      sampling = false;
      await sampler;
      const tps = /tps = ([\d.]+)/.exec(bench)?.[1] ?? '?';
      const written = Number(segNo(endSeg) - segNo(startSeg));
      const tpcbPeak = peak;

      // Then a bulk load (pgbench -i: COPY and index builds), WAL as fast as the machine writes it.
      peak = 0;
      sampling = true;
      const loadSampler = (async () => {
        while (sampling) {
          peak = Math.max(peak, countReady());
          await sleep(200);
        }
      })();
      const loadStartSeg = await c.sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
      const loadStart = Date.now();
      await c.pgbench(['-i', '-s', String(loadScale), '-q'], { timeoutMs: 900_000 });
      const loadSeconds = (Date.now() - loadStart) / 1000;
      const loadEndSeg = await c.sql('SELECT pg_walfile_name(pg_switch_wal())');
      const loadDrainStart = Date.now();
      while (countReady() > 0 && Date.now() - loadDrainStart < 600_000) await sleep(200);
      const loadDrain = (Date.now() - loadDrainStart) / 1000;
      sampling = false;
      await loadSampler;
      const loadWritten = Number(segNo(loadEndSeg) - segNo(loadStartSeg));
      ctx.record({
        section: LOAD_SECTION,
        name: variant.name,
        value: `peak ${peak} ready; ${loadWritten} segments in ${loadSeconds.toFixed(1)} s; drained ${loadDrain.toFixed(1)} s after the load`,
      });
      ctx.log(`    bulk load: peak ${peak} ready, ${loadWritten} segments in ${loadSeconds.toFixed(1)} s, drain ${loadDrain.toFixed(1)} s`);
      peak = tpcbPeak;
      const failed = await c.sql('SELECT failed_count FROM pg_stat_archiver');
      ctx.record({
        section: SECTION,
        name: variant.name,
        value: `peak ${peak}, mean ${(total / Math.max(1, samples)).toFixed(1)} ready; ${written} segments in ${seconds} s; drained in ${drain.toFixed(1)} s; ${tps} tps; archiver failures ${failed}`,
      });
      ctx.log(`    peak ${peak} ready, ${written} segments, drain ${drain.toFixed(1)} s, ${tps} tps, failures ${failed}`);
    } finally {
      await c.remove().catch(() => {});
      await teardown?.().catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

/** Stop is done; start the same cluster again with `env` added to the server's environment (its archive_command inherits it). */
async function restartWithEnv(c: Cluster, env: Record<string, string>): Promise<void> {
  // Cluster.start() passes this process's environment (at that moment) to the server.
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(env)) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  try {
    await c.start();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}
