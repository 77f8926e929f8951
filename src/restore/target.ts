import { usageError } from '../errors.ts';
import { formatLsn, parseLsn } from '../pg/wal-names.ts';

/** Where recovery should stop. 'latest' replays all archived WAL. */
export type RecoveryTarget =
  | { kind: 'time'; text: string; time: Date }
  | { kind: 'lsn'; lsn: bigint }
  | { kind: 'xid'; xid: string }
  | { kind: 'name'; name: string }
  | { kind: 'immediate' }
  | { kind: 'latest' };

export type TargetTimeline = { kind: 'latest' } | { kind: 'current' } | { kind: 'number'; timeline: number };

export interface TargetFlags {
  targetTime?: string | undefined;
  targetLsn?: string | undefined;
  targetXid?: string | undefined;
  targetName?: string | undefined;
  immediate?: boolean | undefined;
}

export function parseTarget(flags: TargetFlags): RecoveryTarget {
  const given = [
    flags.targetTime !== undefined && '--target-time',
    flags.targetLsn !== undefined && '--target-lsn',
    flags.targetXid !== undefined && '--target-xid',
    flags.targetName !== undefined && '--target-name',
    flags.immediate && '--immediate',
  ].filter(Boolean);
  if (given.length > 1) throw usageError(`give one recovery target, not ${given.join(' and ')}`);
  if (flags.targetTime !== undefined) return { kind: 'time', text: flags.targetTime.trim(), time: parseTargetTime(flags.targetTime) };
  if (flags.targetLsn !== undefined) {
    try {
      return { kind: 'lsn', lsn: parseLsn(flags.targetLsn) };
    } catch (err) {
      throw usageError(`--target-lsn: ${(err as Error).message}`);
    }
  }
  if (flags.targetXid !== undefined) {
    if (!/^\d+$/.test(flags.targetXid.trim())) throw usageError(`--target-xid ${flags.targetXid}: expected a transaction ID (a number)`);
    return { kind: 'xid', xid: flags.targetXid.trim() };
  }
  if (flags.targetName !== undefined) {
    if (flags.targetName === '') throw usageError('--target-name: give the name passed to pg_create_restore_point()');
    return { kind: 'name', name: flags.targetName };
  }
  if (flags.immediate) return { kind: 'immediate' };
  return { kind: 'latest' };
}

/**
 * A timestamp with an explicit time zone, as PostgreSQL reads recovery_target_time:
 * "2026-11-27 14:05:00+00", "2026-11-27T14:05:00.123456Z", "2026-11-27 14:05 UTC", "...+05:30".
 * Without a zone PostgreSQL would use the restored server's TimeZone setting, which walship
 * cannot know, so a zone is required.
 */
export function parseTargetTime(text: string): Date {
  const m = /^\s*(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?\s*(Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)\s*$/i.exec(text);
  if (!m) {
    throw usageError(`--target-time '${text}': expected a time with its zone, e.g. '2026-11-27 14:05:00+00' or '2026-11-27T14:05:00Z'`);
  }
  const [, y, mo, d, h, mi, s = '00', frac = '', zone] = m;
  let offset = 'Z';
  if (!/^(Z|UTC|GMT)$/i.test(zone!)) {
    const z = /^([+-])(\d{2}):?(\d{2})?$/.exec(zone!)!;
    offset = `${z[1]}${z[2]}:${z[3] ?? '00'}`;
  }
  const ms = frac ? `.${frac.padEnd(3, '0').slice(0, 3)}` : '';
  const date = new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}${ms}${offset}`);
  const calendar = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
  if (Number.isNaN(date.getTime()) || calendar.getUTCDate() !== Number(d) || Number(h) > 23 || Number(mi) > 59 || Number(s) > 59) {
    throw usageError(`--target-time '${text}': not a valid date and time`);
  }
  return date;
}

export function parseTargetTimeline(text: string | undefined): TargetTimeline {
  if (text === undefined || text === 'latest') return { kind: 'latest' };
  if (text === 'current') return { kind: 'current' };
  if (/^\d+$/.test(text) && Number(text) >= 1 && Number(text) < 2 ** 32) return { kind: 'number', timeline: Number(text) };
  throw usageError(`--target-timeline ${text}: expected latest, current or a timeline number`);
}

export function describeTarget(target: RecoveryTarget): string {
  switch (target.kind) {
    case 'time':
      return `time ${target.text}`;
    case 'lsn':
      return `LSN ${formatLsn(target.lsn)}`;
    case 'xid':
      return `transaction ${target.xid}`;
    case 'name':
      return `restore point '${target.name}'`;
    case 'immediate':
      return 'the end of the backup (consistency)';
    case 'latest':
      return 'the end of the archived WAL';
  }
}
