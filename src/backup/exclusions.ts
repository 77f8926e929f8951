/**
 * What a base backup leaves out (DESIGN §4, as PostgreSQL's own basebackup.c does). Paths are
 * relative to the data directory, '/'-separated.
 */

/** Top-level directories whose contents are skipped; the directories themselves are kept, empty. */
export const emptiedDirectories = new Set([
  'pg_wal',
  'pg_replslot',
  'pg_dynshmem',
  'pg_notify',
  'pg_serial',
  'pg_snapshots',
  'pg_stat_tmp',
  'pg_subtrans',
]);

/** Subdirectories of pg_wal that are kept (empty): archive_status, and summaries (17+). */
export const keptWalSubdirectories = new Set(['archive_status', 'summaries']);

/** Top-level files never copied. backup_label and tablespace_map come from pg_backup_stop instead. */
export const skippedTopFiles = new Set([
  'postmaster.pid',
  'postmaster.opts',
  'backup_label',
  'backup_label.old',
  'tablespace_map',
  'tablespace_map.old',
  'backup_manifest',
  'postgresql.auto.conf.tmp',
  'current_logfiles.tmp',
  // restore writes the signal it is asked for; a standby's signal must not leak into a restore.
  'recovery.signal',
  'standby.signal',
]);

/** Skipped wherever they appear. */
export function isSkippedAnywhere(name: string): boolean {
  return name === 'pg_internal.init' || name.startsWith('pgsql_tmp');
}

const relationFileRe = /^(\d+)(?:_(fsm|vm|init))?(?:\.\d+)?$/;
const tempRelationRe = /^t\d+_\d+(?:_(?:fsm|vm|init))?(?:\.\d+)?$/;

/** Is `dir` (relative) a database directory, whose files are relation forks? */
export function isDatabaseDirectory(dir: string): boolean {
  return /^base\/\d+$/.test(dir) || /^pg_tblspc\/\d+\/PG_[^/]+\/\d+$/.test(dir);
}

/**
 * Relation files of a database directory to skip: temporary relations, and every fork but the
 * init fork of unlogged relations (they are reset from the init fork at the end of recovery).
 */
export function skippedRelationFiles(names: readonly string[]): Set<string> {
  const unlogged = new Set<string>();
  for (const name of names) {
    const m = relationFileRe.exec(name);
    if (m && m[2] === 'init') unlogged.add(m[1]!);
  }
  const skipped = new Set<string>();
  for (const name of names) {
    if (tempRelationRe.test(name)) {
      skipped.add(name);
      continue;
    }
    const m = relationFileRe.exec(name);
    if (m && m[2] !== 'init' && unlogged.has(m[1]!)) skipped.add(name);
  }
  return skipped;
}
