import { existsSync } from 'node:fs';
import type { Client, ClientConfig } from 'pg';
import { postgresError, refusedError } from '../errors.ts';

/** Connection settings in the libpq conventions (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD; ~/.pgpass is honoured). */
export interface ConnectionSettings {
  host?: string | undefined;
  port?: number | undefined;
  user?: string | undefined;
  database?: string | undefined;
  password?: string | undefined;
}

export const supportedMajors = [14, 15, 16, 17, 18] as const;

/** Advisory lock key of backup-push ("walship" in ASCII). */
const backupLockKey = '33602640649152880';

/** Facts about the server a base backup needs. */
export interface ServerInfo {
  versionNum: number;
  major: number;
  version: string;
  systemIdentifier: bigint;
  walSegmentSize: number;
  blockSize: number;
  /** Blocks per relation segment file (RELSEG_SIZE; 131072 for 1 GiB of 8 kB blocks). */
  relationSegmentBlocks: number;
  dataChecksums: boolean;
  dataDirectory: string | undefined;
  archiveMode: string;
  archiveCommand: string;
  inRecovery: boolean;
}

export interface BackupStart {
  lsn: bigint;
  time: Date;
}

export interface BackupStop {
  lsn: bigint;
  time: Date;
  /** backup_label content, byte for byte. */
  labelFile: string;
  /** tablespace_map content ('' when there are no tablespaces). */
  tablespaceMapFile: string;
}

/** Where libpq would connect when PGHOST is unset: the Unix socket directory that has this port's socket, else localhost. */
function defaultHost(port: number): string {
  for (const dir of ['/var/run/postgresql', '/run/postgresql', '/tmp']) {
    if (existsSync(`${dir}/.s.PGSQL.${port}`)) return dir;
  }
  return 'localhost';
}

const describe = (config: ClientConfig) =>
  `${String(config.host).startsWith('/') ? `socket ${config.host}/.s.PGSQL.${config.port}` : `${config.host}:${config.port}`} as ${config.user ?? 'the OS user'}, database ${config.database}`;

/**
 * Connect with the libpq conventions (PGHOST or the usual socket directories, PGPORT, PGUSER,
 * PGDATABASE, PGPASSWORD, ~/.pgpass). Failures are PostgreSQL errors (exit 6) naming the server.
 */
export async function connectClient(
  settings: ConnectionSettings,
  options: { applicationName: string; timeoutMs: number; statementTimeoutMs?: number },
): Promise<{ client: Client; where: string }> {
  const { default: pg } = await import('pg');
  const port = settings.port ?? 5432;
  const config: ClientConfig = {
    host: settings.host ?? defaultHost(port),
    port,
    user: settings.user ?? process.env.USER ?? undefined,
    database: settings.database ?? 'postgres',
    application_name: options.applicationName,
    connectionTimeoutMillis: options.timeoutMs,
  };
  if (options.statementTimeoutMs !== undefined) config.statement_timeout = options.statementTimeoutMs;
  if (settings.password !== undefined) config.password = settings.password;
  else {
    // ~/.pgpass (PGPASSFILE), looked up only when the server asks for a password.
    const { pgpassLookup } = await import('./pgpass.ts');
    const { log } = await import('../log.ts');
    config.password = () => {
      const found = pgpassLookup(
        { host: String(config.host), port, database: String(config.database), user: String(config.user ?? '') },
        { warn: (message) => log.warn(message) },
      );
      if (found === undefined) throw new Error('the server asks for a password and none was supplied (PGPASSWORD, or a line in ~/.pgpass or PGPASSFILE)');
      return found;
    };
  }
  const client = new pg.Client(config);
  const where = describe(config);
  // An error event on an idle client (server gone) must not crash the process; the next query fails instead.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    throw postgresError(`cannot connect to PostgreSQL (${where}): ${(err as Error).message}`, err);
  }
  return { client, where };
}

/**
 * One session with the local server, used by backup-push: the non-exclusive backup API requires
 * pg_backup_start and pg_backup_stop in the same session, and the backup is aborted by the
 * server if the session ends without pg_backup_stop (so a killed backup-push leaves nothing behind).
 */
export class PgSession {
  readonly #client: Client;
  readonly where: string;
  #major = 0;

  private constructor(client: Client, where: string) {
    this.#client = client;
    this.where = where;
  }

  static async connect(settings: ConnectionSettings, applicationName: string): Promise<PgSession> {
    const { client, where } = await connectClient(settings, { applicationName, timeoutMs: 30_000 });
    return new PgSession(client, where);
  }

  async #query<R extends Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<R[]> {
    try {
      return (await this.#client.query<R>(sql, params)).rows;
    } catch (err) {
      throw postgresError(`PostgreSQL (${this.where}): ${(err as Error).message}`, err);
    }
  }

  async serverInfo(): Promise<ServerInfo> {
    const [row] = await this.#query<Record<string, string | boolean | null>>(
      `SELECT current_setting('server_version_num') AS version_num,
              current_setting('server_version') AS version,
              (SELECT system_identifier::text FROM pg_control_system()) AS sysid,
              (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS wal_segment_size,
              (SELECT unit FROM pg_settings WHERE name = 'wal_segment_size') AS wal_segment_unit,
              current_setting('block_size') AS block_size,
              (SELECT setting FROM pg_settings WHERE name = 'segment_size') AS segment_size,
              current_setting('data_checksums') AS data_checksums,
              current_setting('data_directory', true) AS data_directory,
              current_setting('archive_mode') AS archive_mode,
              current_setting('archive_command') AS archive_command,
              pg_is_in_recovery() AS in_recovery`,
    );
    if (!row) throw postgresError(`PostgreSQL (${this.where}): no answer to the server information query`);
    const versionNum = Number(row.version_num);
    const major = Math.floor(versionNum / 10000);
    this.#major = major;
    const unit = String(row.wal_segment_unit ?? 'B');
    const unitBytes = unit === 'B' ? 1 : unit === '8kB' ? 8192 : unit === 'MB' ? 1 << 20 : 1;
    return {
      versionNum,
      major,
      version: String(row.version),
      systemIdentifier: BigInt(String(row.sysid)),
      walSegmentSize: Number(row.wal_segment_size) * unitBytes,
      blockSize: Number(row.block_size),
      relationSegmentBlocks: Number(row.segment_size),
      dataChecksums: row.data_checksums === 'on',
      dataDirectory: row.data_directory ? String(row.data_directory) : undefined,
      archiveMode: String(row.archive_mode),
      archiveCommand: String(row.archive_command),
      inRecovery: row.in_recovery === true,
    };
  }

  /** Refuse servers walship does not support. */
  static checkSupported(info: ServerInfo): void {
    if (!(supportedMajors as readonly number[]).includes(info.major)) {
      throw refusedError(`PostgreSQL ${info.version} is not supported; walship supports ${supportedMajors[0]}–${supportedMajors.at(-1)}`);
    }
  }

  /**
   * A session-level advisory lock: one backup-push per cluster at a time (two would pick the same
   * name when they start in the same WAL segment). Released when the session ends, even on kill -9.
   */
  async tryLockBackup(): Promise<boolean> {
    const [row] = await this.#query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS locked', [backupLockKey]);
    return row!.locked === true;
  }

  /** pg_backup_start (15+) or pg_start_backup(label, fast, exclusive => false) (14). */
  async startBackup(label: string, fast: boolean): Promise<BackupStart> {
    const call = this.#major >= 15 ? 'pg_backup_start($1, $2)' : 'pg_start_backup($1, $2, false)';
    const [row] = await this.#query<{ lsn: string; time: Date }>(`SELECT ${call}::text AS lsn, clock_timestamp() AS time`, [label, fast]);
    return { lsn: parseLsnText(row!.lsn), time: row!.time };
  }

  /**
   * pg_backup_stop(wait_for_archive => false) (15+) or pg_stop_backup(exclusive => false, wait_for_archive => false) (14).
   * The server still switches to a new WAL segment; walship itself waits for the stop segment to reach
   * the repository, with a timeout, instead of the server's unbounded wait.
   */
  async stopBackup(): Promise<BackupStop> {
    const call = this.#major >= 15 ? 'pg_backup_stop(false)' : 'pg_stop_backup(false, false)';
    const [row] = await this.#query<{ lsn: string; labelfile: string; spcmapfile: string | null; time: Date }>(
      `SELECT lsn::text AS lsn, labelfile, spcmapfile, clock_timestamp() AS time FROM ${call}`,
    );
    return { lsn: parseLsnText(row!.lsn), time: row!.time, labelFile: row!.labelfile, tablespaceMapFile: row!.spcmapfile ?? '' };
  }

  /** The timeline of the latest checkpoint (after pg_backup_start: the backup's timeline). */
  async timeline(): Promise<number> {
    const [row] = await this.#query<{ timeline_id: number }>('SELECT timeline_id FROM pg_control_checkpoint()');
    return Number(row!.timeline_id);
  }

  /** The archiver's view, for a helpful message when the stop segment does not arrive. */
  async archiverStatus(): Promise<{ archivedCount: number; lastArchived: string | null; failedCount: number; lastFailed: string | null; lastFailedTime: Date | null }> {
    const [row] = await this.#query<{ archived_count: string; last_archived_wal: string | null; failed_count: string; last_failed_wal: string | null; last_failed_time: Date | null }>(
      'SELECT archived_count, last_archived_wal, failed_count, last_failed_wal, last_failed_time FROM pg_stat_archiver',
    );
    return {
      archivedCount: Number(row!.archived_count),
      lastArchived: row!.last_archived_wal,
      failedCount: Number(row!.failed_count),
      lastFailed: row!.last_failed_wal,
      lastFailedTime: row!.last_failed_time,
    };
  }

  async close(): Promise<void> {
    await this.#client.end().catch(() => {});
  }
}

function parseLsnText(text: string): bigint {
  const m = /^([0-9A-Fa-f]+)\/([0-9A-Fa-f]+)$/.exec(text);
  if (!m) throw postgresError(`PostgreSQL returned an unexpected LSN '${text}'`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}
