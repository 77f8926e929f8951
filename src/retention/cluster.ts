/**
 * What `check` and `status` ask the connected cluster: archiving settings, system identifier,
 * the current WAL position and the archiver's counters; and `check --switch-wal`'s switch.
 * (PgSession in src/pg/session.ts serves backup-push's one backup session and exposes no other
 * query; this is the read-mostly probe, with the same libpq conventions.)
 */
import type { Client } from 'pg';
import { postgresError } from '../errors.ts';
import { connectClient, type ConnectionSettings } from '../pg/session.ts';

export interface ClusterFacts {
  where: string;
  version: string;
  major: number;
  systemIdentifier: string;
  walSegmentSize: number;
  archiveMode: string;
  archiveCommand: string;
  /** PostgreSQL 15+: archive_library ('' when archive_command is used). */
  archiveLibrary: string | undefined;
  inRecovery: boolean;
  /** Primary: the current insert position and its segment (with the current timeline). */
  currentLsn: string | undefined;
  currentWalFile: string | undefined;
  archiver: {
    archivedCount: number;
    lastArchivedWal: string | null;
    lastArchivedTime: Date | null;
    failedCount: number;
    lastFailedWal: string | null;
    lastFailedTime: Date | null;
  };
}


export class ClusterProbe {
  readonly where: string;
  readonly #client: Client;

  private constructor(client: Client, where: string) {
    this.#client = client;
    this.where = where;
  }

  static async connect(settings: ConnectionSettings, timeoutMs = 10_000): Promise<ClusterProbe> {
    const { client, where } = await connectClient(settings, { applicationName: 'walship check', timeoutMs, statementTimeoutMs: timeoutMs });
    return new ClusterProbe(client, where);
  }

  async #one<R extends Record<string, unknown>>(sql: string): Promise<R> {
    try {
      return (await this.#client.query<R>(sql)).rows[0]!;
    } catch (err) {
      throw postgresError(`PostgreSQL (${this.where}): ${(err as Error).message}`, err);
    }
  }

  async facts(): Promise<ClusterFacts> {
    const row = await this.#one<Record<string, string | boolean | null>>(
      `SELECT current_setting('server_version') AS version,
              current_setting('server_version_num') AS version_num,
              (SELECT system_identifier::text FROM pg_control_system()) AS sysid,
              (SELECT setting::bigint * CASE unit WHEN '8kB' THEN 8192 WHEN 'MB' THEN 1048576 ELSE 1 END FROM pg_settings WHERE name = 'wal_segment_size')::text AS wal_segment_size,
              current_setting('archive_mode') AS archive_mode,
              current_setting('archive_command') AS archive_command,
              current_setting('archive_library', true) AS archive_library,
              pg_is_in_recovery() AS in_recovery`,
    );
    const inRecovery = row.in_recovery === true;
    const position = inRecovery
      ? { lsn: null, file: null }
      : await this.#one<{ lsn: string | null; file: string | null }>('SELECT pg_current_wal_lsn()::text AS lsn, pg_walfile_name(pg_current_wal_lsn()) AS file');
    const archiver = await this.#one<Record<string, string | Date | null>>(
      'SELECT archived_count::text, last_archived_wal, last_archived_time, failed_count::text, last_failed_wal, last_failed_time FROM pg_stat_archiver',
    );
    return {
      where: this.where,
      version: String(row.version),
      major: Math.floor(Number(row.version_num) / 10000),
      systemIdentifier: String(row.sysid),
      walSegmentSize: Number(row.wal_segment_size),
      archiveMode: String(row.archive_mode),
      archiveCommand: String(row.archive_command ?? ''),
      archiveLibrary: row.archive_library === null ? undefined : String(row.archive_library),
      inRecovery,
      currentLsn: position.lsn ?? undefined,
      currentWalFile: position.file ?? undefined,
      archiver: {
        archivedCount: Number(archiver.archived_count),
        lastArchivedWal: (archiver.last_archived_wal as string | null) ?? null,
        lastArchivedTime: (archiver.last_archived_time as Date | null) ?? null,
        failedCount: Number(archiver.failed_count),
        lastFailedWal: (archiver.last_failed_wal as string | null) ?? null,
        lastFailedTime: (archiver.last_failed_time as Date | null) ?? null,
      },
    };
  }

  /**
   * pg_switch_wal(): the segment that must reach the archive for everything written so far to be
   * there (the one holding the switch record; when nothing was written since the last switch, the
   * previous segment, which is complete already).
   */
  async switchWal(): Promise<string> {
    const row = await this.#one<{ file: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS file');
    return row.file;
  }

  async close(): Promise<void> {
    await this.#client.end().catch(() => {});
  }
}

/** Does archive_command hand WAL to walship (wal-push, with %p)? Returns the problem, if any. */
export function archiveCommandProblem(command: string): string | undefined {
  const trimmed = command.trim();
  if (trimmed === '' || trimmed === '(disabled)') return 'archive_command is empty: nothing is archived';
  if (!/walship/.test(trimmed)) return `archive_command '${trimmed}' does not call walship (expected e.g. 'walship wal-push %p')`;
  if (!/\bwal-push\b/.test(trimmed)) return `archive_command '${trimmed}' calls walship but not wal-push`;
  if (!/%p/.test(trimmed)) return `archive_command '${trimmed}' does not pass the file's path (%p)`;
  return undefined;
}
