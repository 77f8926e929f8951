import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Config } from '../config/settings.ts';
import { postgresError, usageError } from '../errors.ts';

/** The PostgreSQL client programs walship runs for logical dumps. */
export type PgTool = 'pg_dump' | 'pg_dumpall' | 'pg_restore' | 'psql';

export interface PgTools {
  /** Absolute path of a client program; throws a usage error (exit 2) naming the setting if missing. */
  path(tool: PgTool): string;
  /** Environment for the client programs: libpq conventions, with the config file's pg* settings filled in. */
  env: NodeJS.ProcessEnv;
}

type PgConfig = Pick<Config, 'pgBinDir' | 'pghost' | 'pgport' | 'pguser' | 'pgdatabase' | 'pgpassword'>;

/**
 * Client tools and their environment from the settings. Settings already merge the environment
 * over the config file, so PGHOST & co. from either reach pg_dump; `.pgpass`, PGSSLMODE, PGSERVICE
 * and the rest of libpq's variables pass through untouched.
 */
export function pgTools(config: PgConfig, baseEnv: NodeJS.ProcessEnv = process.env): PgTools {
  const env: NodeJS.ProcessEnv = { ...baseEnv };
  const set = (name: string, value: string | number | undefined) => {
    if (value !== undefined) env[name] = String(value);
  };
  set('PGHOST', config.pghost);
  set('PGPORT', config.pgport);
  set('PGUSER', config.pguser);
  set('PGDATABASE', config.pgdatabase);
  set('PGPASSWORD', config.pgpassword);
  const found = new Map<PgTool, string>();
  return {
    env,
    path(tool) {
      let file = found.get(tool);
      if (!file) {
        file = locate(tool, config.pgBinDir, baseEnv.PATH ?? '');
        found.set(tool, file);
      }
      return file;
    },
  };
}

function locate(tool: PgTool, binDir: string | undefined, path: string): string {
  if (binDir) {
    const file = join(binDir, tool);
    if (executable(file)) return file;
    throw usageError(`setting pgBinDir (WALSHIP_PG_BIN_DIR): no executable ${tool} in ${binDir}`);
  }
  for (const dir of path.split(delimiter)) {
    if (dir && executable(join(dir, tool))) return join(dir, tool);
  }
  // Debian/Ubuntu keep the versioned binaries off PATH unless postgresql-client-common is installed.
  const versions = safeReaddir('/usr/lib/postgresql')
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const file = join('/usr/lib/postgresql', v, 'bin', tool);
    if (executable(file)) return file;
  }
  throw usageError(`${tool} not found on PATH: install the PostgreSQL client tools (of the server's major or newer) or set WALSHIP_PG_BIN_DIR`);
}

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** A running client program whose stderr is kept (the last 64 KiB) for the error message. */
export interface ToolProcess {
  child: ChildProcess;
  /** Resolves when the program has exited and its output is closed; never rejects. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

export function startTool(
  tools: PgTools,
  tool: PgTool,
  args: string[],
  stdio: { stdin: 'pipe' | 'ignore'; stdout: 'pipe' | 'ignore' | 'inherit' },
  extraEnv?: Record<string, string>,
): ToolProcess {
  const file = tools.path(tool);
  const child = spawn(file, args, { env: { ...tools.env, ...extraEnv }, stdio: [stdio.stdin, stdio.stdout, 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (text: string) => {
    err += text;
    if (err.length > 65536) err = err.slice(-65536);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('error', (e) => {
      err += `${tool}: cannot run ${file}: ${e.message}\n`;
      resolve({ code: -1, signal: null });
    });
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  return { child, exited, stderr: () => err };
}

/**
 * A client program's failure in one line: its "error:"/"FATAL:" lines (what a person reads first),
 * otherwise its last line; never its arguments (a conninfo may hold a password).
 */
export function toolFailure(tool: PgTool, status: { code: number | null; signal: NodeJS.Signals | null }, stderr: string) {
  return postgresError(`${tool} failed (${status.signal ? `signal ${status.signal}` : `exit ${status.code}`}): ${toolMessage(stderr) || 'no message'}`);
}

export function toolMessage(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const errors = lines.filter((l) => /\b(error|fatal|FATAL|ERROR|PANIC):/.test(l));
  const chosen = errors.length ? errors.slice(0, 3) : lines.slice(-1);
  return chosen.join(' ').replace(/\s+/g, ' ').slice(0, 2000);
}

/** Non-error lines a tool printed (pg_dump warnings), for the log. */
export function toolWarnings(stderr: string): string[] {
  return stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && /warning:/i.test(l))
    .slice(0, 20);
}
