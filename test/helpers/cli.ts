/**
 * Run the built CLI (`bin/walship`, which loads `dist/cli.js`; build it first with `npm run build`)
 * the way PostgreSQL does: by absolute path, with an environment the test controls completely
 * (nothing leaks from the test runner's own WALSHIP_* or PG* variables), optionally as the
 * `postgres` OS user via `runuser -u postgres --` (root bypasses file permissions, so permission
 * tests must not run as root).
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const walshipBin = `${repoRoot}bin/walship`;

export interface RunOptions {
  /** The child's whole environment besides PATH, HOME and LANG. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  asUser?: 'postgres';
  timeoutMs?: number;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Fail with a clear message when the CLI was not built. */
export function requireBuiltCli(): void {
  if (!existsSync(`${repoRoot}dist/cli.js`)) throw new Error(`${repoRoot}dist/cli.js is missing: run 'npm run build' before the CLI tests`);
}

export function runWalship(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  requireBuiltCli();
  const env: Record<string, string> = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', HOME: process.env.HOME ?? '/root' };
  for (const [key, value] of Object.entries(options.env ?? {})) if (value !== undefined) env[key] = value;
  const [file, argv] =
    options.asUser === 'postgres' ? ['/usr/sbin/runuser', ['-u', 'postgres', '--', walshipBin, ...args]] : [walshipBin, [...args]];
  if (options.asUser === 'postgres') env.HOME = '/var/lib/postgresql';
  return new Promise((resolve, reject) => {
    execFile(
      file,
      argv,
      { env, cwd: options.cwd ?? repoRoot, timeout: options.timeoutMs ?? 30_000, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') {
          reject(new Error(`walship ${args.join(' ')}: ${err.message}\n${stderr}`));
          return;
        }
        resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
  });
}

/** uid and gid of the postgres OS user (from /etc/passwd). */
export function postgresUser(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('no postgres OS user on this machine');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}
