/**
 * Shared pieces of the base backup / PITR tests (backup-*.test.ts, pitr-*.test.ts, fault/backup-*):
 * a file:// repository with a config file the server can read, a cluster archiving through the
 * built CLI, and the CLI run as the postgres user (as cron and the server run it).
 *
 * The CLI is `bin/walship` of this checkout (`npm run build` first); TEST_WALSHIP_BIN points the
 * tests at another build of the same tree.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chownToServerUser, ensurePostgresCanReach, makeServerOwnedDir, serverUser, startCluster, type Cluster, type StartClusterOptions } from '../helpers/pg-cluster.ts';
import { repoRoot, requireBuiltCli, walshipBin } from '../helpers/cli.ts';

export const cli = process.env.TEST_WALSHIP_BIN ?? walshipBin;
if (!process.env.TEST_WALSHIP_BIN) requireBuiltCli();
ensurePostgresCanReach(join(cli, '..', '..', 'node_modules', 'node', 'bin'));

export interface Repository {
  /** Server-owned temp dir holding the repository and the config. */
  dir: string;
  /** The repository root (file://). */
  repo: string;
  /** Config file, readable by the postgres user. */
  config: string;
}

export async function makeRepository(settings: Record<string, unknown> = {}): Promise<Repository> {
  const dir = await makeServerOwnedDir('walship-bk-');
  const repo = join(dir, 'repo');
  const config = join(dir, 'walship.json');
  // A file:// repository must exist (walship refuses to create a missing mount point).
  await mkdir(repo);
  await writeFile(config, JSON.stringify({ storage: `file://${repo}`, ...settings }));
  await chownToServerUser(dir);
  await chmod(config, 0o644);
  return { dir, repo, config };
}

/** A cluster that archives every WAL file into `repository` through `walship wal-push %p`. */
export function archivingCluster(major: number, repository: Repository, options: Partial<StartClusterOptions> = {}): Promise<Cluster> {
  return startCluster({
    major,
    ...options,
    settings: {
      archive_mode: 'on',
      wal_level: 'replica',
      archive_command: `${cli} --config ${repository.config} wal-push %p`,
      ...options.settings,
    },
  });
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run walship as the postgres OS user (what cron and the server do), with a clean environment. */
export function walship(args: readonly string[], options: { env?: Record<string, string>; timeoutMs?: number; asRoot?: boolean } = {}): Promise<CliResult> {
  const env: Record<string, string> = { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8', HOME: serverUser().home, ...options.env };
  const asPostgres = !options.asRoot && process.getuid?.() === 0;
  const [file, argv] = asPostgres ? ['/usr/sbin/runuser', ['-u', serverUser().name, '--', cli, ...args]] : [cli, [...args]];
  return new Promise((resolve, reject) => {
    execFile(file, argv, { env, cwd: '/', timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        reject(new Error(`walship ${args.join(' ')}: ${err.message}\n${stderr}`));
        return;
      }
      resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
    });
  });
}

/** Like {@link walship}, failing with its output unless it exits 0. */
export async function walshipOk(args: readonly string[], options: Parameters<typeof walship>[1] = {}): Promise<CliResult> {
  const r = await walship(args, options);
  if (r.code !== 0) throw new Error(`walship ${args.join(' ')} exited ${r.code}\n--- stderr ---\n${r.stderr}\n--- stdout ---\n${r.stdout}`);
  return r;
}

/** libpq environment for backup-push against `cluster`. */
export const pgEnv = (cluster: Cluster): Record<string, string> => ({ ...cluster.env(), PGDATA: cluster.dataDir });

/** A fresh, absent restore target inside a server-owned temp dir. */
export async function restoreTarget(prefix = 'walship-restore-'): Promise<string> {
  const dir = await makeServerOwnedDir(prefix);
  const target = join(dir, 'data');
  await mkdir(target, { mode: 0o700 });
  await chownToServerUser(target);
  return target;
}

export { repoRoot };
