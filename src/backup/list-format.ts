import type { BackupSummary } from './manifest.ts';
import { formatBytes } from './progress.ts';

/** backup-list's text table. */
export function formatBackupTable(backups: readonly BackupSummary[]): string {
  if (backups.length === 0) return 'no complete backups\n';
  const rows = [
    ['name', 'start time', 'stop time', 'start LSN', 'stop LSN', 'TLI', 'PG', 'size', 'stored', 'permanent'],
    ...backups.map((b) => [
      b.name,
      shortTime(b.startTime),
      shortTime(b.stopTime),
      b.startLsn,
      b.stopLsn,
      String(b.timeline),
      String(b.pgMajor),
      formatBytes(b.size),
      formatBytes(b.storedSize),
      b.permanent ? 'yes' : 'no',
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

const shortTime = (iso: string) => iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
