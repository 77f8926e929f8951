/**
 * global/pg_control (ControlFileData, pg_control.h). Only the leading fields are read; they sit at
 * the same offsets in every supported major: system_identifier u64 @0, pg_control_version u32 @8,
 * catalog_version_no u32 @12, state i32 @16, time i64 @24, checkPoint u64 @32.
 */
export interface ControlFile {
  systemIdentifier: bigint;
  /** 1300 for 13–16, 1700 for 17, 1800 for 18. */
  controlVersion: number;
  /** Catalog version (e.g. 202209061): tablespace directories are named PG_<major>_<catalogVersion>. */
  catalogVersion: number;
  state: number;
  /** Time of the last pg_control update, seconds since the epoch. */
  time: bigint;
  checkpointLsn: bigint;
}

export const controlFilePath = 'global/pg_control';

export function parseControlFile(bytes: Buffer): ControlFile | undefined {
  if (bytes.length < 40) return undefined;
  const controlVersion = bytes.readUInt32LE(8);
  // Sanity: a control file of a supported major has a plausible version (it is written in host byte order).
  if (controlVersion < 900 || controlVersion > 9999) return undefined;
  return {
    systemIdentifier: bytes.readBigUInt64LE(0),
    controlVersion,
    catalogVersion: bytes.readUInt32LE(12),
    state: bytes.readInt32LE(16),
    time: bytes.readBigInt64LE(24),
    checkpointLsn: bytes.readBigUInt64LE(32),
  };
}

/** The per-version subdirectory PostgreSQL creates inside a tablespace location (TABLESPACE_VERSION_DIRECTORY). */
export const tablespaceVersionDirectory = (major: number, catalogVersion: number) => `PG_${major}_${catalogVersion}`;
