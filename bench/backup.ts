/**
 * Base backups, in one run on the same data: a PostgreSQL 15 cluster (data checksums on) loaded
 * with `pgbench -i -s 100` (≈1.5 GB; quick mode `-s 20`), archiving through walship
 * (`archive_command = '<walship> --config <cfg> wal-push %p'`, a file:// repository on local disk).
 *
 * Measured in 3 rounds, each as MiB/s (size of the data directory without pg_wal / wall time;
 * the best round, with the median beside it), CPU seconds (user + system, children included; the
 * median round) and peak RSS (GNU time's %M: the largest resident set of the process or of any
 * one of its children):
 * - walship `backup-push --fast`, zstd level 1 and lz4 (upload concurrency 2, the default), and
 *   `backup-fetch LATEST <empty dir>` of each (download concurrency 2, the default);
 * - pgBackRest 2.45 `backup --type=full --start-fast`, process-max 2, zst level 1 and lz4 (one
 *   stanza and repository per compression, on the same cluster), and `restore` of each into an
 *   empty directory;
 * - the restore floor: the newest backup's parts uncompressed into RAM, `tar -x` of each at once,
 *   one `sync` (what no restore can beat on this disk; it does less than any restore tool);
 * - `pg_basebackup -Ft -X none -c fast` (client 15) with `--compress=server-lz4` and
 *   `--compress=server-zstd:1` (no restore: it writes tar files; extracting them is another tool).
 *
 * Choices, so the tools do the same work:
 * - pgBackRest runs with `archive-check=n` (`--no-archive-check`): the server archives through walship only, so
 *   pgBackRest's backup does not wait for WAL in its own archive. walship's backup-push does wait
 *   for its stop segment to reach the repository (and pg_basebackup -X none for the archiver):
 *   that wait is counted against them.
 * - Page checksums are not verified by anyone: walship's backup-push verifies only with
 *   `--verify-checksums`, so pgBackRest gets `checksum-page=n` and pg_basebackup
 *   `--no-verify-checksums` (both verify by default on a cluster with checksums).
 * - Every tool runs as the postgres OS user, from the page cache (the data was just loaded; 23 GiB
 *   of RAM), after a CHECKPOINT and a `sync`, so no run pays for another's writeback. Fetch and
 *   restore write the whole data directory and fsync it: the disk's write speed (measured here
 *   with dd + fsync) bounds them, and the table says when a figure is near it.
 * - This machine is shared and its load (CPU and disk) drifts: walship and pgBackRest alternate
 *   (who goes first flips per compression and per round), and ratios use each variant's best
 *   round, since other load only ever adds time; the median rounds' ratio is printed beside it.
 *
 * Runs as a section of `npm run bench` (`npm run bench -- --only backup`), or alone:
 * `node bench/backup.ts [--quick]` (after `npm run build`: it runs the work tree's bin/walship).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { clientBin, ensurePostgresCanReach, makeServerOwnedDir, serverUser, startCluster, type Cluster } from '../test/helpers/pg-cluster.ts';
import { cleanEnv, settle, table, walshipBin, walshipRoot, type BenchContext, type Row } from './lib.ts';
import { setupPgBackRest, type PgBackRest } from './pgbackrest.ts';

const SECTION = 'backup: base backup and restore of a pgbench database (local disk)';
const MiB = 1024 * 1024;

interface Timed {
  ms: number;
  /** Peak RSS in KiB (GNU time %M). */
  rssKiB: number;
  /** User + system CPU seconds, children included (GNU time %U + %S). */
  cpuS: number;
  stderr: string;
}

interface Figure {
  name: string;
  ms: number;
  rssKiB: number;
  cpuS: number;
  /** Bytes stored in the repository (backups only). */
  stored?: number;
  note?: string;
  /** Every round's time (ms), ascending, and their median. */
  runs?: number[];
  medianMs?: number;
  /** Every round's time (ms), in the order of the rounds. */
  rounds?: number[];
}

export async function run(ctx: BenchContext): Promise<void> {
  const scale = ctx.quick ? 20 : 100;
  const user = serverUser();
  const asServer = process.getuid?.() === 0 ? { uid: user.uid, gid: user.gid } : {};
  ensurePostgresCanReach(path.join(walshipRoot, 'bin'));
  const nodeBin = path.join(walshipRoot, 'node_modules', 'node', 'bin');
  if (fs.existsSync(nodeBin)) ensurePostgresCanReach(fs.realpathSync(nodeBin));

  // Everything lives in one directory owned by the server user: walship's repository (created here:
  // walship never creates it), its config files, pgBackRest's repositories, the restore targets.
  const base = await makeServerOwnedDir('walship-bench-backup-');
  let cluster: Cluster | undefined;
  let floorParts: string | undefined;
  try {
    const repo = path.join(base, 'repo');
    fs.mkdirSync(repo, { mode: 0o700 });
    const config = (compression: 'zstd' | 'lz4') => {
      const file = path.join(base, `walship-${compression}.json`);
      fs.writeFileSync(file, `${JSON.stringify({ storage: `file://${repo}`, compression, compressionLevel: 1 })}\n`);
      return file;
    };
    const configs = { zstd: config('zstd'), lz4: config('lz4') };
    chown(base, user);

    ctx.log(`  PostgreSQL 15: pgbench -i -s ${scale}, archiving through walship`);
    const loadStart = Date.now();
    cluster = await startCluster({
      major: 15,
      settings: {
        archive_mode: 'on',
        archive_command: `${walshipBin} --config ${configs.zstd} wal-push %p`,
        wal_level: 'replica',
        max_wal_size: '4GB',
        checkpoint_timeout: '30min',
      },
    });
    const c = cluster;
    await c.pgbench(['-i', '-s', String(scale), '-q'], { timeoutMs: 900_000 });
    await c.sql('CHECKPOINT');
    await waitForArchiver(c);
    const dataBytes = dataSize(c.dataDir);
    const dataMiB = dataBytes / MiB;
    ctx.log(`  loaded in ${((Date.now() - loadStart) / 1000).toFixed(0)} s: data directory ${dataMiB.toFixed(0)} MiB without pg_wal`);

    const spawnOptions = { ...asServer, cwd: '/' };
    let rssFiles = 0;
    /** Run one command as the server user under /usr/bin/time; wall time and peak RSS. Throws unless it exits 0. */
    const timed = (file: string, args: string[], env: NodeJS.ProcessEnv): Promise<Timed> =>
      new Promise((resolve, reject) => {
        const rssFile = path.join(base, `rss-${++rssFiles}`);
        const start = process.hrtime.bigint();
        const child = spawn('/usr/bin/time', ['-f', '%M %U %S', '-o', rssFile, file, ...args], { ...spawnOptions, env, stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
        child.on('error', reject);
        child.on('close', (code, signal) => {
          const ms = Number(process.hrtime.bigint() - start) / 1e6;
          let rssKiB = NaN;
          let cpuS = NaN;
          try {
            const [rss, user, sys] = fs.readFileSync(rssFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
            rssKiB = rss!;
            cpuS = user! + sys!;
            fs.rmSync(rssFile, { force: true });
          } catch {
            // no figure
          }
          if (code !== 0) reject(new Error(`${path.basename(file)} ${args.join(' ')} exited ${code ?? signal}: ${stderr.trim().slice(-2000)}`));
          else resolve({ ms, rssKiB, cpuS, stderr });
        });
      });
    /** Settle first: a checkpoint now (so the next backup's own is short), then every dirty page to disk. */
    const quiet = async () => {
      await c.sql('CHECKPOINT');
      settle();
    };
    const emptyDir = (name: string) => {
      const dir = path.join(base, name);
      fs.rmSync(dir, { recursive: true, force: true });
      fs.mkdirSync(dir, { mode: 0o700 });
      chown(dir, user);
      return dir;
    };

    const walshipEnv = cleanEnv({ PGHOST: c.host, PGPORT: String(c.port), PGUSER: 'postgres', PGDATABASE: 'postgres', HOME: user.home });
    const pgbrs: Record<'zstd' | 'lz4', PgBackRest> = {
      zstd: setupPgBackRest(path.join(base, 'pgbr-zst'), c.dataDir, { compressType: 'zst', compressLevel: 1, processMax: 2, owner: user }),
      lz4: setupPgBackRest(path.join(base, 'pgbr-lz4'), c.dataDir, { compressType: 'lz4', processMax: 2, owner: user }),
    };
    const pgbrEnv = cleanEnv({ HOME: user.home });
    const connection = [`--pg1-socket-path=${c.host}`, `--pg1-port=${c.port}`, '--pg1-user=postgres'];

    const walshipPush = async (compression: 'zstd' | 'lz4'): Promise<Figure> => {
      await quiet();
      const before = dirSize(path.join(repo, 'backups'));
      const t = await timed(walshipBin, ['--config', configs[compression], 'backup-push', '--fast', '--pgdata', c.dataDir], walshipEnv);
      const stored = dirSize(path.join(repo, 'backups')) - before;
      return { name: `walship backup-push --fast, ${compression === 'zstd' ? 'zstd-1' : 'lz4'}`, ms: t.ms, rssKiB: t.rssKiB, cpuS: t.cpuS, stored };
    };
    const walshipFetch = async (compression: 'zstd' | 'lz4'): Promise<Figure> => {
      const target = path.join(base, `fetch-walship-${compression}`);
      await quiet();
      const t = await timed(walshipBin, ['--config', configs[compression], 'backup-fetch', 'LATEST', target], walshipEnv);
      checkRestored(target, dataBytes, 'walship backup-fetch');
      fs.rmSync(target, { recursive: true, force: true });
      return { name: `walship backup-fetch LATEST (${compression === 'zstd' ? 'zstd-1' : 'lz4'})`, ms: t.ms, rssKiB: t.rssKiB, cpuS: t.cpuS };
    };
    // The floor of any restore on this disk: the newest backup's parts, uncompressed into RAM
    // (/dev/shm) once, laid down by `tar -x`, one process per part, then one `sync`: no download,
    // no decompression, no hashing, no per-file fsync. Restore tools do all of that on top.
    const restoreFloor = async (): Promise<Figure> => {
      if (!floorParts) {
        const backups = path.join(repo, 'backups');
        const newest = fs.readdirSync(backups).sort((a, b) => fs.statSync(path.join(backups, b)).mtimeMs - fs.statSync(path.join(backups, a)).mtimeMs)[0]!;
        floorParts = fs.mkdtempSync('/dev/shm/walship-bench-floor-');
        chown(floorParts, user);
        for (const part of fs.readdirSync(path.join(backups, newest, 'parts'))) {
          await timed('/bin/sh', ['-c', 'zstd -dcq "$0" > "$1"', path.join(backups, newest, 'parts', part), path.join(floorParts, part)], cleanEnv());
        }
      }
      const target = emptyDir('restore-floor');
      await quiet();
      const t = await timed('/bin/sh', ['-c', 'for p in "$0"/*; do tar -xf "$p" -C "$1" & done; wait; sync', floorParts, target], cleanEnv());
      fs.rmSync(target, { recursive: true, force: true });
      return { name: 'restore floor: tar -x of the uncompressed parts from RAM + sync', ms: t.ms, rssKiB: t.rssKiB, cpuS: t.cpuS, note: 'one tar per part, one sync at the end; no decompression, hashing or per-file fsync' };
    };
    const pgbrBackup = async (compression: 'zstd' | 'lz4'): Promise<Figure> => {
      const pgbr = pgbrs[compression];
      const backupDir = path.join(path.dirname(pgbr.config), 'repo', 'backup');
      await quiet();
      const before = dirSize(backupDir);
      const args = [...connection, '--no-archive-check', '--no-checksum-page', '--start-fast', '--type=full', '--repo1-retention-full=9'];
      const t = await timed('pgbackrest', pgbr.args('backup', ...args), pgbrEnv);
      const stored = dirSize(backupDir) - before;
      return { name: `pgBackRest backup, process-max 2, ${compression === 'zstd' ? 'zst-1' : 'lz4'}`, ms: t.ms, rssKiB: t.rssKiB, cpuS: t.cpuS, stored };
    };
    const pgbrRestore = async (compression: 'zstd' | 'lz4'): Promise<Figure> => {
      const target = emptyDir(`restore-pgbr-${compression}`);
      await quiet();
      const t = await timed('pgbackrest', [...pgbrs[compression].args('restore', `--pg1-path=${target}`)], pgbrEnv);
      checkRestored(target, dataBytes, 'pgbackrest restore');
      fs.rmSync(target, { recursive: true, force: true });
      return { name: `pgBackRest restore, process-max 2 (${compression === 'zstd' ? 'zst-1' : 'lz4'})`, ms: t.ms, rssKiB: t.rssKiB, cpuS: t.cpuS };
    };
    const basebackup = async (compress: string): Promise<Figure> => {
      const target = emptyDir(`basebackup-${compress.replace(/[^a-z0-9]+/g, '-')}`);
      await quiet();
      const args = ['-h', c.host, '-p', String(c.port), '-U', 'postgres', '-D', target, '-Ft', '-X', 'none', '-c', 'fast', '--no-verify-checksums', `--compress=${compress}`];
      const t = await timed(clientBin('pg_basebackup'), args, cleanEnv({ HOME: user.home }));
      const stored = dirSize(target);
      fs.rmSync(target, { recursive: true, force: true });
      return { name: `pg_basebackup -Ft --compress=${compress}`, ms: t.ms, rssKiB: t.rssKiB, cpuS: t.cpuS, stored, note: 'RSS and CPU of the client only; compression runs in the server (walsender)' };
    };

    // Disk write limit: what fetch and restore cannot beat (they write and fsync the whole directory),
    // through the page cache and around it (O_DIRECT: walship's fetch writes large files so).
    // Measured before and after the rounds: it drifts on this shared machine too.
    const ddMiB = ctx.quick ? 512 : 1024;
    const disk = async (direct: boolean) => {
      settle();
      const dd = await timed('dd', ['if=/dev/zero', `of=${path.join(base, 'dd')}`, 'bs=1M', `count=${ddMiB}`, 'conv=fsync', ...(direct ? ['oflag=direct'] : [])], cleanEnv());
      fs.rmSync(path.join(base, 'dd'), { force: true });
      return ddMiB / (dd.ms / 1000);
    };
    const diskRuns = [await disk(false)];
    const directRuns = [await disk(true)];

    // Rounds (this machine is shared and its load drifts): each round runs every variant once; the
    // order flips from round to round (who goes first for each compression, lz4 or zstd first), and
    // each walship backup-fetch runs right after its backup-push, so LATEST is that backup.
    const rounds = 3;
    const samples = new Map<string, Figure[]>();
    const add = (f: Figure) => samples.set(f.name, [...(samples.get(f.name) ?? []), f]);
    for (let round = 0; round < rounds; round++) {
      const flip = round % 2 === 1;
      for (const compression of flip ? (['lz4', 'zstd'] as const) : (['zstd', 'lz4'] as const)) {
        const walshipFirst = (compression === 'zstd') !== flip;
        ctx.log(`  round ${round + 1}/${rounds}, ${compression}: ${walshipFirst ? 'walship, then pgBackRest' : 'pgBackRest, then walship'}`);
        const walshipPair = async () => {
          add(await walshipPush(compression));
          add(await walshipFetch(compression));
        };
        const pgbrPair = async () => {
          add(await pgbrBackup(compression));
          add(await pgbrRestore(compression));
        };
        for (const pair of walshipFirst ? [walshipPair, pgbrPair] : [pgbrPair, walshipPair]) await pair();
        if (compression === 'zstd') add(await restoreFloor());
      }
      ctx.log(`  round ${round + 1}/${rounds}: pg_basebackup -Ft, server lz4 and server zstd-1`);
      for (const compress of flip ? ['server-zstd:1', 'server-lz4'] : ['server-lz4', 'server-zstd:1']) add(await basebackup(compress));
    }
    /**
     * Per variant: the best round (other sessions' load on this machine only ever adds time, so the
     * fastest round is the closest to what the tool can do; ratios use it) and the median round
     * (shown too), the highest RSS, the last stored size.
     */
    const summary = (f: Figure[]): Figure => {
      const times = f.map((x) => x.ms).sort((a, b) => a - b);
      const cpu = f.map((x) => x.cpuS).sort((a, b) => a - b);
      return { ...f[f.length - 1]!, ms: times[0]!, medianMs: times[times.length >> 1]!, rssKiB: Math.max(...f.map((x) => x.rssKiB)), cpuS: cpu[cpu.length >> 1]!, runs: times, rounds: f.map((x) => x.ms) };
    };
    diskRuns.push(await disk(false));
    directRuns.push(await disk(true));
    const diskMiBs = Math.max(...diskRuns, ...directRuns);
    const all = [...samples.values()].map(summary);
    const backups = all.filter((f) => !/fetch|restore/.test(f.name));
    const restores = all.filter((f) => /fetch|restore/.test(f.name));

    // --- the table ----------------------------------------------------------------------------
    const rate = (f: Figure, median = false) => dataMiB / ((median ? (f.medianMs ?? f.ms) : f.ms) / 1000);
    const find = (list: Figure[], prefix: string) => list.find((f) => f.name.startsWith(prefix))!;
    ctx.record({
      section: SECTION,
      name: 'data',
      value: `pgbench -i -s ${scale}: ${dataMiB.toFixed(0)} MiB (data directory without pg_wal), checksums on; ${rounds} rounds`,
      note: ctx.quick ? 'quick: on this little data the fixed costs (checkpoint, pgBackRest waiting for the clock to tick over a second at start and stop) weigh heavily; the full run is the measure' : undefined,
    });
    ctx.record({
      section: SECTION,
      name: 'disk: dd 1 MiB blocks + fsync',
      value: `${diskRuns.map((r) => r.toFixed(0)).join(' and ')} MiB/s (${ddMiB} MiB, before and after the rounds)`,
      note: 'write limit through the page cache',
    });
    ctx.record({
      section: SECTION,
      name: 'disk: dd 1 MiB blocks, O_DIRECT + fsync',
      value: `${directRuns.map((r) => r.toFixed(0)).join(' and ')} MiB/s (${ddMiB} MiB, before and after the rounds)`,
      note: 'write limit around it; the faster of the two marks a fetch or restore as near the disk write limit',
    });
    for (const f of [...backups, ...restores]) {
      const stored = f.stored === undefined ? '' : `; stored ${(f.stored / MiB).toFixed(0)} MiB (${((f.stored / dataBytes) * 100).toFixed(1)}%)`;
      const diskBound = restores.includes(f) && rate(f) >= 0.8 * diskMiBs ? 'near the disk write limit' : '';
      const runs = (f.runs ?? [f.ms]).map((ms) => (ms / 1000).toFixed(1)).join(', ');
      ctx.record({
        section: SECTION,
        name: f.name,
        value: `best ${rate(f).toFixed(0)} MiB/s, median ${rate(f, true).toFixed(0)} MiB/s (${runs} s); CPU ${f.cpuS.toFixed(1)} s; peak RSS ${(f.rssKiB / 1024).toFixed(0)} MiB${stored}`,
        note: [f.note, diskBound].filter(Boolean).join('; ') || undefined,
      });
      ctx.log(`    ${f.name}: best ${rate(f).toFixed(0)} MiB/s, median ${rate(f, true).toFixed(0)} MiB/s (${runs} s), CPU ${f.cpuS.toFixed(1)} s, RSS ${(f.rssKiB / 1024).toFixed(0)} MiB${stored}`);
    }
    /**
     * Best round against best round (the target's verdict), median against median, and round by
     * round: within a round the two ran one after the other, in the same state of this machine,
     * which drifts between rounds (the dd figures before and after differ up to 4×).
     */
    const ratio = (name: string, mine: Figure, theirs: Figure, target?: number) => {
      const r = rate(mine) / rate(theirs);
      const m = rate(mine, true) / rate(theirs, true);
      const paired = mine.rounds && theirs.rounds?.length === mine.rounds.length ? mine.rounds.map((ms, i) => theirs.rounds![i]! / ms) : [];
      const byRound = paired.length ? `; round by round ${paired.map((x) => `${x.toFixed(2)}×`).join(', ')}` : '';
      const verdict = target === undefined ? '' : ` (target ≥ ${target}: ${r >= target ? 'met' : 'MISSED'})`;
      ctx.record({ section: SECTION, name, value: `${r.toFixed(2)}×${verdict}; median rounds ${m.toFixed(2)}×${byRound}` });
      ctx.log(`    ${name}: ${r.toFixed(2)}×${verdict}; median rounds ${m.toFixed(2)}×${byRound}`);
    };
    const floor = find(restores, 'restore floor');
    for (const [mine, theirs] of [['zstd-1', 'zst-1'], ['lz4', 'lz4']] as const) {
      ratio(`ratio backup ${mine}: walship / pgBackRest`, find(backups, `walship backup-push --fast, ${mine}`), find(backups, `pgBackRest backup, process-max 2, ${theirs}`), 1.3);
      const pgbrRestoreFigure = find(restores, `pgBackRest restore, process-max 2 (${theirs})`);
      ratio(`ratio restore ${mine}: walship backup-fetch / pgBackRest restore`, find(restores, `walship backup-fetch LATEST (${mine})`), pgbrRestoreFigure, 1.3);
      // Whether 1.3× is possible at all here: the floor's best round against 1.3× pgBackRest's best.
      const needed = 1.3 * rate(pgbrRestoreFigure);
      const value = `1.3× pgBackRest restore (${theirs}) is ${needed.toFixed(0)} MiB/s; the restore floor reached ${rate(floor).toFixed(0)} MiB/s (${(rate(floor) / rate(pgbrRestoreFigure)).toFixed(2)}× pgBackRest)`;
      ctx.record({ section: SECTION, name: `restore ${mine}: is 1.3× within this disk?`, value: `${value}: ${needed > rate(floor) ? 'no, beyond the floor' : 'yes'}` });
      ctx.log(`    restore ${mine}: ${value}`);
    }
    ratio('ratio backup lz4: walship / pg_basebackup server-lz4', find(backups, 'walship backup-push --fast, lz4'), find(backups, 'pg_basebackup -Ft --compress=server-lz4'));
    ratio('ratio backup zstd-1: walship / pg_basebackup server-zstd:1', find(backups, 'walship backup-push --fast, zstd-1'), find(backups, 'pg_basebackup -Ft --compress=server-zstd:1'));
    const rss = Math.max(...backups.concat(restores).filter((f) => f.name.startsWith('walship')).map((f) => f.rssKiB)) / 1024;
    ctx.record({ section: SECTION, name: 'walship peak RSS, backup and fetch', value: `${rss.toFixed(0)} MiB (target < 256 MiB: ${rss < 256 ? 'met' : 'MISSED'})` });
  } finally {
    if (floorParts) fs.rmSync(floorParts, { recursive: true, force: true });
    await cluster?.remove().catch(() => {});
    fs.rmSync(base, { recursive: true, force: true });
  }
}

function chown(dir: string, user: { uid: number; gid: number }): void {
  if (process.getuid?.() !== 0) return;
  for (const entry of [dir, ...fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((p) => path.join(dir, p))]) fs.lchownSync(entry, user.uid, user.gid);
}

/** Bytes of the regular files under `dir` (0 if absent). */
function dirSize(dir: string, skip?: (rel: string) => boolean): number {
  let total = 0;
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { recursive: true, withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    if (!e.isFile()) continue;
    const full = path.join(e.parentPath, e.name);
    if (skip?.(path.relative(dir, full))) continue;
    try {
      total += fs.statSync(full).size;
    } catch {
      // vanished
    }
  }
  return total;
}

/** What every tool backs up: the data directory without pg_wal (and the server's pid file). */
function dataSize(pgdata: string): number {
  return dirSize(pgdata, (rel) => rel.startsWith(`pg_wal${path.sep}`) || rel === 'postmaster.pid');
}

/** A restored directory must hold about the data (a tool that silently restored nothing would look fast). */
function checkRestored(dir: string, dataBytes: number, what: string): void {
  if (!fs.existsSync(path.join(dir, 'global', 'pg_control'))) throw new Error(`${what}: no global/pg_control in ${dir}`);
  const got = dataSize(dir);
  if (got < dataBytes * 0.95) throw new Error(`${what}: ${dir} holds ${got} bytes, the data directory ${dataBytes}`);
}

async function waitForArchiver(c: Cluster): Promise<void> {
  await c.sql('SELECT pg_switch_wal()');
  const status = path.join(c.dataDir, 'pg_wal', 'archive_status');
  const deadline = Date.now() + 300_000;
  while (fs.readdirSync(status).some((f) => f.endsWith('.ready'))) {
    if (Date.now() > deadline) throw new Error('the archiver (walship wal-push) did not catch up within 5 minutes');
    await new Promise((r) => setTimeout(r, 200));
  }
  const failed = await c.sql('SELECT failed_count FROM pg_stat_archiver');
  if (failed !== '0') throw new Error(`archive_command failed ${failed} time(s) during the load:\n${c.logTail(20)}`);
}

// Alone: node bench/backup.ts [--quick]
if (import.meta.main) {
  const started = Date.now();
  const rows: Row[] = [];
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'walship-bench-'));
  try {
    await run({
      quick: process.argv.includes('--quick'),
      workDir,
      wal: { dir: workDir, names: [], systemIdentifier: 'none' },
      segments: 0,
      log: (line) => process.stderr.write(`[backup ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}\n`),
      record: (row) => rows.push(row),
      rows,
      args: [],
    });
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
  }
  process.stdout.write(`${table(rows)}\n`);
}
