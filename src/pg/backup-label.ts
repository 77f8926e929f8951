import { parseLsn } from './wal-names.ts';

/**
 * The backup_label text pg_backup_stop returns, e.g.
 *   START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
 *   CHECKPOINT LOCATION: 0/2000060
 *   BACKUP METHOD: streamed
 *   BACKUP FROM: primary
 *   START TIME: 2026-11-27 14:05:00 UTC
 *   LABEL: walship
 *   START TIMELINE: 1
 */
export interface BackupLabel {
  startLsn: bigint;
  startWalFile: string;
  checkpointLsn: bigint;
  timeline: number;
  label: string;
  startTime: string | undefined;
  backupFrom: string | undefined;
}

export function parseBackupLabel(text: string): BackupLabel {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const cut = line.indexOf(': ');
    if (cut > 0) fields.set(line.slice(0, cut), line.slice(cut + 2));
  }
  const start = /^([0-9A-F]+\/[0-9A-F]+) \(file ([0-9A-F]{24})\)$/.exec(fields.get('START WAL LOCATION') ?? '');
  const checkpoint = fields.get('CHECKPOINT LOCATION');
  const timeline = fields.get('START TIMELINE');
  if (!start || !checkpoint || !timeline || !/^\d+$/.test(timeline)) throw new Error(`not a backup_label: ${JSON.stringify(text.slice(0, 200))}`);
  return {
    startLsn: parseLsn(start[1]!),
    startWalFile: start[2]!,
    checkpointLsn: parseLsn(checkpoint),
    timeline: Number(timeline),
    label: fields.get('LABEL') ?? '',
    startTime: fields.get('START TIME'),
    backupFrom: fields.get('BACKUP FROM'),
  };
}
