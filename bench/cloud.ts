/**
 * Cloud backends on emulators (issue 6, item 10): `walship wal-push` per 16 MiB segment (one
 * process per segment, as PostgreSQL runs archive_command) and `walship backup-push --fast` MiB/s,
 * into s3:// (s3rver), azure:// (azurite) and gs:// (the in-repo GCS test server), each printed as
 * a ratio to file:// on the same data in the same run. Targets alternate segment by segment and
 * backup by backup, so drift in disk or CPU speed hits all alike.
 *
 * EMULATOR FIGURES ARE NOT CLOUD FIGURES. The emulators run on loopback, on this machine's disk
 * and cores (competing with walship for them), with none of a cloud's latency, bandwidth limits or
 * server-side durability. What the ratios show is walship's client-side cost per backend (SDK,
 * request signing, multipart/resumable/staged uploads) plus the emulator's own speed; expect real
 * S3/GCS/Azure to be dominated by round trips (tens of ms per request) instead.
 *
 * Data: the run's real pgbench WAL segments when `npm run bench` runs it (ctx.wal),
 * otherwise synthetic segments with a valid header that compress about 4:1
 * (test/helpers/wal-files.ts). backup-push: a PostgreSQL 15 cluster after `pgbench -i` (scale 5
 * quick, 20 full) whose archive_command is walship into the repository being measured.
 *
 *   npm run bench -- --only cloud [--quick]
 *   node bench/cloud.ts [--quick] [--json]        (standalone; `npm run build` first)
 *
 * Needs root or the postgres OS user (the cluster), and the devDependencies s3rver and azurite.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startAzurite, startGcsServer, startS3rver, type Emulator } from '../test/helpers/emulators.ts';
import { chownToServerUser, ensurePostgresCanReach, execAsServerUser, makeServerOwnedDir, startCluster } from '../test/helpers/pg-cluster.ts';
import { makeSegment } from '../test/helpers/wal-files.ts';
import { cleanEnv, makePgdata, median, walshipBin, walshipRoot, type BenchContext } from './lib.ts';

export const NOTE =
  'emulators on loopback (s3rver, azurite, in-repo GCS test server) on this machine: NOT cloud figures; ratios show client-side cost per backend plus emulator speed, not S3/GCS/Azure latency or throughput';
const PUSH = 'cloud: wal-push per 16 MiB segment, one process per segment (emulators on loopback, NOT cloud figures)';
const BACKUP = 'cloud: backup-push --fast (emulators on loopback, NOT cloud figures)';
const FILE = 'file://';
const MiB = 1024 * 1024;

export interface CloudBenchOptions extends Partial<BenchContext> {
  quick: boolean;
}

export interface CloudBenchResult {
  /** Per target: median and mean wall time of one `wal-push` process, and the median's ratio to file://. */
  walPush: Record<string, { medianMs: number; meanMs: number; ratioToFile: number }>;
  /** Per target, medians over the rounds; ratioToFile is throughput relative to file:// (below 1: slower). */
  backupPush: Record<string, { sizeMiB: number; medianMs: number; mibPerSec: number; ratioToFile: number; backupDurationMs: number }>;
  /** How it was measured (nested, so `npm run bench` does not print it as a section of its own). */
  setup: {
    note: string;
    /** Segments timed per target (after one untimed warm-up push each). */
    segments: number;
    /** Real pgbench WAL (from `npm run bench`) or synthetic segments. */
    wal: 'pgbench' | 'synthetic';
    backupRounds: number;
    pgbenchScale: number;
  };
}

interface Target {
  name: string;
  /** Storage URL for a prefix (file:// gets its own directory). */
  url(prefix: string): Promise<string>;
  env: Record<string, string>;
}

/** One child process, timed (wall clock); rejects with its stderr unless it exits 0. */
function timed(file: string, args: string[], options: { env: NodeJS.ProcessEnv; cwd?: string }): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(file, args, { env: options.env, cwd: options.cwd ?? '/', stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()).length > 20_000 && (stderr = stderr.slice(-10_000)));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (code === 0) resolve(ms);
      else reject(new Error(`${path.basename(file)} ${args.join(' ')} exited ${code ?? signal}: ${stderr.trim().slice(-2000)}`));
    });
  });
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const round1 = (x: number) => Math.round(x * 10) / 10;
const round3 = (x: number) => Math.round(x * 1000) / 1000;

export async function run(options: CloudBenchOptions): Promise<CloudBenchResult> {
  const quick = options.quick;
  const log = options.log ?? (() => {});
  const record = options.record ?? (() => {});
  const count = quick ? 8 : 24;
  const scale = quick ? 5 : 20;
  const rounds = quick ? 1 : 3;
  const work = fs.mkdtempSync(path.join(options.workDir ?? os.tmpdir(), 'walship-bench-cloud-'));
  const emulators: Emulator[] = [];
  try {
    log('cloud: starting s3rver, azurite and the GCS test server');
    const [s3, az, gs] = await Promise.all([startS3rver(), startAzurite(), startGcsServer()]);
    emulators.push(s3, az, gs);
    const fileRoot = await makeServerOwnedDir('walship-bench-cloud-file-');
    const targets: Target[] = [
      {
        name: FILE,
        url: async (prefix) => {
          const dir = path.join(fileRoot, prefix);
          fs.mkdirSync(dir, { recursive: true }); // walship never creates a file:// root
          await chownToServerUser(fileRoot);
          return `file://${dir}`;
        },
        env: {},
      },
      { name: 's3:// (s3rver)', url: async (prefix) => s3.urlFor({ prefix }), env: s3.env },
      { name: 'azure:// (azurite)', url: async (prefix) => az.urlFor({ prefix }), env: az.env },
      { name: 'gs:// (GCS test server)', url: async (prefix) => gs.urlFor({ prefix }), env: gs.env },
    ];
    const rotate = <T>(xs: T[], by: number) => xs.map((_, i) => xs[(i + by) % xs.length]!);

    // --- wal-push, one process per segment ----------------------------------------------------
    const pgdata = path.join(work, 'pgdata');
    let names: string[];
    let wal: CloudBenchResult['setup']['wal'];
    if (options.wal && options.wal.names.length >= 2) {
      makePgdata(pgdata, options.wal, { withWal: true, ready: false });
      names = options.wal.names.slice(0, count + 1);
      wal = 'pgbench';
    } else {
      fs.mkdirSync(path.join(pgdata, 'pg_wal'), { recursive: true });
      names = [];
      for (let i = 0; i <= count; i++) {
        const segment = makeSegment({ segNo: BigInt(i + 1), seed: `cloud-${i}` });
        fs.writeFileSync(path.join(pgdata, 'pg_wal', segment.name), segment.bytes);
        names.push(segment.name);
      }
      wal = 'synthetic';
    }
    const timedCount = names.length - 1;
    log(`cloud: wal-push of ${timedCount} ${wal} segments (+1 warm-up) into each of ${targets.map((t) => t.name).join(', ')}`);
    const pushEnv = new Map<Target, NodeJS.ProcessEnv>();
    for (const t of targets) {
      const config = path.join(work, `push-${targets.indexOf(t)}.json`);
      fs.writeFileSync(config, JSON.stringify({ storage: await t.url('push') }));
      pushEnv.set(t, cleanEnv({ ...t.env, WALSHIP_CONFIG: config, WALSHIP_LOOKAHEAD: '0' }));
    }
    for (const name of names) fs.readFileSync(path.join(pgdata, 'pg_wal', name)); // page cache
    const pushTimes = new Map<Target, number[]>(targets.map((t) => [t, []]));
    for (let i = 0; i < names.length; i++) {
      for (const t of rotate(targets, i)) {
        const ms = await timed(walshipBin, ['wal-push', `pg_wal/${names[i]}`], { env: pushEnv.get(t)!, cwd: pgdata });
        if (i > 0) pushTimes.get(t)!.push(ms);
      }
    }
    const fileMedian = median(pushTimes.get(targets[0]!)!);
    const walPush: CloudBenchResult['walPush'] = {};
    for (const t of targets) {
      const times = pushTimes.get(t)!;
      walPush[t.name] = { medianMs: round1(median(times)), meanMs: round1(mean(times)), ratioToFile: round3(median(times) / fileMedian) };
      record({
        section: PUSH,
        name: t.name,
        medianMs: median(times),
        perSegmentMs: mean(times),
        reference: t.name === FILE ? [] : [FILE],
        note: t.name === FILE ? `${timedCount} ${wal} segments, zstd-1, lookahead 0` : undefined,
      });
      log(`  ${t.name}: median ${median(times).toFixed(1)} ms, mean ${mean(times).toFixed(1)} ms per segment (${(median(times) / fileMedian).toFixed(2)}× file://)`);
    }
    record({ section: PUSH, name: 'NOTE', note: NOTE });

    // --- backup-push --------------------------------------------------------------------------
    ensurePostgresCanReach(path.join(walshipRoot, 'bin'));
    ensurePostgresCanReach(fs.realpathSync(path.join(walshipRoot, 'node_modules', 'node', 'bin')));
    const dir = await makeServerOwnedDir('walship-bench-cloud-');
    const configs = new Map<Target, string>();
    for (const t of targets) {
      const config = path.join(dir, `backup-${targets.indexOf(t)}.json`);
      fs.writeFileSync(config, JSON.stringify({ storage: await t.url('backup') }));
      configs.set(t, config);
    }
    // The archive_command follows the repository being measured: backup-push waits for its stop
    // segment to be archived into that repository.
    const current = path.join(dir, 'current.json');
    const useTarget = (t: Target) => {
      fs.copyFileSync(configs.get(t)!, `${current}.tmp`);
      fs.renameSync(`${current}.tmp`, current);
    };
    useTarget(targets[0]!);
    await chownToServerUser(dir);
    for (const f of fs.readdirSync(dir)) fs.chmodSync(path.join(dir, f), 0o644);
    const serverEnv = Object.assign({}, ...targets.map((t) => t.env)) as Record<string, string>;
    await using cluster = await startCluster({
      major: 15,
      env: serverEnv,
      settings: {
        archive_mode: 'on',
        wal_level: 'replica',
        archive_command: `${walshipBin} --config ${current} wal-push %p`,
        max_wal_size: '2GB',
        checkpoint_timeout: '30min',
      },
    });
    log(`cloud: pgbench -i -s ${scale} on PostgreSQL 15`);
    await cluster.pgbench(['-i', '-s', String(scale), '-q'], { timeoutMs: 600_000 });
    await cluster.sql('CHECKPOINT');
    const backupTimes = new Map<Target, { ms: number; size: number; duration: number }[]>(targets.map((t) => [t, []]));
    const pgEnv = { ...cluster.env(), PGDATA: cluster.dataDir };
    for (let r = 0; r < rounds; r++) {
      for (const t of rotate(targets, r)) {
        useTarget(t);
        // Let what was written before land wherever it goes; the backup's own WAL goes to t.
        await cluster.sql('SELECT pg_switch_wal()');
        await cluster.waitFor("SELECT count(*) = 0 FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'", 't', 120_000);
        const env = { ...t.env, ...pgEnv };
        const start = process.hrtime.bigint();
        await execAsServerUser(walshipBin, ['--config', configs.get(t)!, 'backup-push', '--fast'], { env, timeoutMs: 600_000 });
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        const list = await execAsServerUser(walshipBin, ['--config', configs.get(t)!, 'backup-list', '--json'], { env: t.env, timeoutMs: 120_000 });
        const newest = (JSON.parse(list.stdout) as { size: number; durationMs: number }[]).at(-1)!;
        backupTimes.get(t)!.push({ ms, size: newest.size, duration: newest.durationMs });
        log(`  round ${r + 1} ${t.name}: ${(newest.size / MiB).toFixed(0)} MiB in ${(ms / 1000).toFixed(2)} s = ${(newest.size / MiB / (ms / 1000)).toFixed(1)} MiB/s`);
      }
    }
    const fileBackupMs = median(backupTimes.get(targets[0]!)!.map((b) => b.ms));
    const backupPush: CloudBenchResult['backupPush'] = {};
    for (const t of targets) {
      const runs = backupTimes.get(t)!;
      const ms = median(runs.map((b) => b.ms));
      const size = median(runs.map((b) => b.size));
      const mibPerSec = size / MiB / (ms / 1000);
      const ratio = fileBackupMs / ms; // throughput relative to file://
      backupPush[t.name] = { sizeMiB: round1(size / MiB), medianMs: Math.round(ms), mibPerSec: round1(mibPerSec), ratioToFile: round3(ratio), backupDurationMs: Math.round(median(runs.map((b) => b.duration))) };
      record({
        section: BACKUP,
        name: t.name,
        medianMs: ms,
        reference: t.name === FILE ? [] : [FILE],
        value: `${mibPerSec.toFixed(1)} MiB/s`,
        note: t.name === FILE ? `pgbench scale ${scale}, ${(size / MiB).toFixed(0)} MiB, median of ${rounds}; wall time incl. start checkpoint and wait for the stop segment` : `throughput ${ratio.toFixed(2)}× file://`,
      });
    }
    record({ section: BACKUP, name: 'NOTE', note: NOTE });
    return { walPush, backupPush, setup: { note: NOTE, segments: timedCount, wal, backupRounds: rounds, pgbenchScale: scale } };
  } finally {
    await Promise.all(emulators.map((e) => e.stop().catch(() => {})));
    fs.rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, json: { type: 'boolean', default: false } } });
  const say = (line: string) => process.stderr.write(`${line}\n`);
  const result = await run({ quick: values.quick ?? false, log: say });
  if (values.json) {
    console.log(JSON.stringify(result));
  } else {
    console.log(`wal-push per 16 MiB segment (${result.setup.wal} WAL, median of ${result.setup.segments}, one process per segment):`);
    for (const [name, r] of Object.entries(result.walPush)) console.log(`  ${name.padEnd(26)} ${String(r.medianMs).padStart(7)} ms  ${r.ratioToFile.toFixed(2)}× file://`);
    console.log(`backup-push --fast (pgbench scale ${result.setup.pgbenchScale}, median of ${result.setup.backupRounds}):`);
    for (const [name, r] of Object.entries(result.backupPush)) console.log(`  ${name.padEnd(26)} ${String(r.mibPerSec).padStart(7)} MiB/s  ${r.ratioToFile.toFixed(2)}× file:// throughput`);
    console.log(`note: ${result.setup.note}`);
  }
  process.exit(0);
}
