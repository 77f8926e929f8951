/** Text and JSON renderings of retention plans, WAL inventories, verification, check and status. */
import { formatBytes } from '../backup/progress.ts';
import { segmentNumber } from '../pg/wal-names.ts';
import type { VerifyReport } from '../wal/verify.ts';
import type { WalInventory } from '../wal/inventory.ts';
import type { TimelineHistoryEntry } from '../pg/timeline-history.ts';
import { formatLsn } from '../pg/wal-names.ts';
import type { BackupDescriptor, RetentionPlan, RetentionRule, WalObject } from './plan.ts';
import type { ExecuteResult } from './execute.ts';
import type { CheckReport, StatusReport } from './health.ts';

const iso = (d: Date) => d.toISOString().replace(/\.\d+Z$/, 'Z');

export function describeRule(rule: RetentionRule): string {
  switch (rule.kind) {
    case 'retain':
      return `retain ${rule.count}`;
    case 'before-time':
      return `before ${rule.time.toISOString()}`;
    case 'before-backup':
      return `before ${rule.name}`;
    case 'garbage':
      return 'garbage';
  }
}

/** Consecutive WAL names on one timeline collapsed to "first .. last (n)". */
export function walRanges(files: readonly WalObject[], segmentSize: number): string[] {
  const lines: string[] = [];
  let start: WalObject | undefined;
  let prev: { file: WalObject; seg: bigint } | undefined;
  let count = 0;
  const flush = () => {
    if (start && prev) lines.push(count === 1 ? start.name : `${start.name} .. ${prev.file.name} (${count} files)`);
  };
  for (const f of files) {
    const seg = f.segmentId ? segmentNumber(f.segmentId, segmentSize) : -1n;
    const contiguous = prev && f.kind === 'segment' && prev.file.kind === 'segment' && f.timeline === prev.file.timeline && seg === prev.seg + 1n;
    if (contiguous) count++;
    else {
      flush();
      start = f;
      count = 1;
    }
    prev = { file: f, seg };
  }
  flush();
  return lines;
}

export function formatPlan(plan: RetentionPlan, segmentSize: number, confirm: boolean): string {
  const out: string[] = [];
  out.push(`walship delete ${describeRule(plan.rule)}${confirm ? '' : ': dry run, nothing is deleted (add --confirm to delete)'}`);
  const row = (verb: string, b: BackupDescriptor, reason: string) =>
    `  ${verb.padEnd(6)} ${b.name}  start ${iso(b.startTime)}  stop ${iso(b.stopTime)}  TLI ${b.timeline}  ${formatBytes(b.bytes).padStart(9)}${b.permanent ? '  permanent' : ''}  (${reason})`;
  const all = [...plan.keep.map((k) => ({ ...k, verb: 'keep' })), ...plan.delete.map((d) => ({ ...d, verb: 'delete' }))].sort(
    (a, b) => a.backup.startTime.getTime() - b.backup.startTime.getTime() || (a.backup.name < b.backup.name ? -1 : 1),
  );
  out.push(`backups (oldest first):${all.length ? '' : ' none complete'}`);
  for (const d of all) out.push(row(d.verb, d.backup, d.reason));
  for (const d of plan.keepIncomplete) out.push(`  keep   ${d.backup.name}  incomplete, ${d.backup.objects} objects, ${formatBytes(d.backup.bytes)}  (${d.reason})`);
  for (const d of plan.deleteIncomplete) out.push(`  delete ${d.backup.name}  incomplete, ${d.backup.objects} objects, ${formatBytes(d.backup.bytes)}  (${d.reason})`);
  const w = plan.wal;
  out.push('WAL:');
  if (!w.floor) out.push('  no complete backup: no WAL is deleted');
  else {
    out.push(`  kept from ${w.floor.name} on (${w.floor.reason}), on every timeline; .history files are always kept`);
    for (const p of w.pinned) out.push(`  kept ${p.first} .. ${p.last} for ${p.backup} (restorable to its end; point-in-time recovery between it and ${w.floor.backup} is not)`);
    const bytes = w.delete.reduce((s, f) => s + f.size, 0);
    if (w.delete.length === 0) out.push('  nothing to delete');
    else {
      out.push(`  delete ${w.delete.length} files, ${formatBytes(bytes)}:`);
      for (const line of walRanges(w.delete, segmentSize)) out.push(`    ${line}`);
    }
    out.push(`  keep ${w.keepCount} files, ${formatBytes(w.keepBytes)}`);
  }
  if (plan.deleteTemp.length) {
    out.push(`temporary files of interrupted writes: delete ${plan.deleteTemp.length}`);
    for (const t of plan.deleteTemp) out.push(`  ${t.path}  ${formatBytes(t.size)}  modified ${iso(t.modified)}`);
  }
  const t = plan.totals;
  out.push(
    `${confirm ? 'deleting' : 'would delete'}: ${t.backups} backups, ${t.incomplete} incomplete backups, ${t.wal} WAL files, ${t.temp} temporary files: ${formatBytes(t.bytes)}`,
  );
  return `${out.join('\n')}\n`;
}

export function planJson(plan: RetentionPlan, confirm: boolean, result?: ExecuteResult): unknown {
  const b = (x: { backup: BackupDescriptor; reason: string }) => ({
    name: x.backup.name,
    timeline: x.backup.timeline,
    startLsn: formatLsn(x.backup.startLsn),
    stopLsn: formatLsn(x.backup.stopLsn),
    startTime: x.backup.startTime.toISOString(),
    stopTime: x.backup.stopTime.toISOString(),
    permanent: x.backup.permanent,
    bytes: x.backup.bytes,
    reason: x.reason,
  });
  return {
    rule: describeRule(plan.rule),
    dryRun: !confirm,
    keep: plan.keep.map(b),
    delete: plan.delete.map(b),
    keepIncomplete: plan.keepIncomplete.map((d) => ({ name: d.backup.name, objects: d.backup.objects, bytes: d.backup.bytes, modified: d.backup.modified.toISOString(), reason: d.reason })),
    deleteIncomplete: plan.deleteIncomplete.map((d) => ({ name: d.backup.name, objects: d.backup.objects, bytes: d.backup.bytes, modified: d.backup.modified.toISOString(), reason: d.reason })),
    wal: {
      floor: plan.wal.floor ? { segment: plan.wal.floor.name, backup: plan.wal.floor.backup, reason: plan.wal.floor.reason } : null,
      pinned: plan.wal.pinned.map((p) => ({ backup: p.backup, first: p.first, last: p.last })),
      delete: plan.wal.delete.map((w) => w.name),
      deleteBytes: plan.wal.delete.reduce((s, w) => s + w.size, 0),
      keepCount: plan.wal.keepCount,
      keepBytes: plan.wal.keepBytes,
    },
    deleteTemp: plan.deleteTemp.map((t) => ({ path: t.path, bytes: t.size, modified: t.modified.toISOString() })),
    totals: plan.totals,
    ...(result ? { deleted: result } : {}),
  };
}

export interface WalShowTimeline {
  timeline: number;
  parent: number | null;
  switchpoint: string | null;
  first: string | null;
  last: string | null;
  count: number;
  bytes: number;
  gaps: { first: string; last: string; count: number }[];
  partials: string[];
  backupLabels: string[];
  hasHistory: boolean;
  backups: string[];
}

export function walShowData(inventory: WalInventory, histories: ReadonlyMap<number, TimelineHistoryEntry[]>, backups: readonly BackupDescriptor[]) {
  const timelines: WalShowTimeline[] = inventory.timelines.map((t) => {
    const parent = histories.get(t.timeline)?.at(-1);
    return {
      timeline: t.timeline,
      parent: parent?.timeline ?? null,
      switchpoint: parent ? formatLsn(parent.switchpoint) : null,
      first: t.first ?? null,
      last: t.last ?? null,
      count: t.count,
      bytes: t.bytes,
      gaps: t.gaps.map((g) => ({ first: g.first, last: g.last, count: Number(g.count) })),
      partials: t.partials,
      backupLabels: t.backupLabels,
      hasHistory: t.hasHistory,
      backups: backups.filter((b) => b.timeline === t.timeline).map((b) => b.name),
    };
  });
  return {
    segmentSize: inventory.segmentSize,
    bytes: inventory.bytes,
    timelines,
    histories: inventory.histories,
    foreign: inventory.foreign.map((f) => f.key),
  };
}

export function formatWalShow(data: ReturnType<typeof walShowData>): string {
  const out: string[] = [];
  out.push(`archived WAL: ${data.timelines.reduce((n, t) => n + t.count, 0)} segments of ${formatBytes(data.segmentSize)}, ${formatBytes(data.bytes)} stored`);
  if (data.timelines.length === 0) out.push('  nothing archived yet');
  for (const t of data.timelines) {
    const origin = t.parent !== null ? `, from timeline ${t.parent} at ${t.switchpoint}` : t.timeline > 1 && !t.hasHistory ? ', its .history is NOT archived' : '';
    out.push(`timeline ${t.timeline}${origin}`);
    out.push(t.count ? `  ${t.first} .. ${t.last}: ${t.count} segments, ${formatBytes(t.bytes)}` : '  no segments');
    out.push(t.gaps.length ? `  gaps: ${t.gaps.map((g) => (g.count === 1 ? g.first : `${g.first} .. ${g.last} (${g.count})`)).join(', ')}` : '  gaps: none');
    if (t.partials.length) out.push(`  partial: ${t.partials.join(', ')}`);
    if (t.backups.length) out.push(`  backups starting here: ${t.backups.join(', ')}`);
  }
  if (data.foreign.length) out.push(`not WAL (ignored): ${data.foreign.join(', ')}`);
  return `${out.join('\n')}\n`;
}

export function verifyJson(report: VerifyReport, exitCode: number) {
  return {
    ok: report.ok,
    exitCode,
    segmentSize: report.segmentSize,
    timeline: report.timeline,
    floor: report.floor ? { segment: report.floor.name, backup: report.floor.backup, reason: report.floor.reason } : null,
    from: report.from ?? null,
    to: report.to ?? null,
    requiredSegments: report.requiredSegments,
    checkedObjects: report.checkedObjects,
    checkedBytes: report.checkedBytes,
    gaps: report.gaps,
    corrupt: report.corrupt,
    problems: report.problems,
    notes: report.notes,
    backups: report.backups,
    waldump: report.waldump,
  };
}

export function formatVerify(report: VerifyReport, exitCode: number): string {
  const out: string[] = [];
  if (report.from && report.to) out.push(`recovery window: ${report.from} .. ${report.to} on timeline ${report.timeline}${report.floor ? ` (from ${report.floor.reason})` : ''}`);
  else out.push('recovery window: no archived WAL');
  out.push(`required segments: ${report.requiredSegments}; decoded ${report.checkedObjects} objects, ${formatBytes(report.checkedBytes)}`);
  if (report.waldump.segments) out.push(`pg_waldump decoded ${report.waldump.segments} segments (${report.waldump.tool})`);
  for (const g of report.gaps) out.push(`GAP ${g.count === 1 ? `segment ${g.first} is missing` : `segments ${g.first} .. ${g.last} are missing (${g.count})`} on timeline ${g.timeline}, needed by ${g.neededBy}`);
  for (const c of report.corrupt) out.push(`CORRUPT ${c.name}: ${c.reason}`);
  for (const p of report.problems) out.push(`PROBLEM ${p}`);
  for (const b of report.backups) if (!b.restorable) out.push(`backup ${b.name} cannot be restored: WAL ${b.first} .. ${b.last} is incomplete`);
  for (const n of report.notes) out.push(`note: ${n}`);
  out.push(report.ok ? 'OK: archived WAL is continuous and intact' : `FAILED (exit ${exitCode}): ${report.gaps.length} gaps, ${report.corrupt.length} corrupt objects, ${report.problems.length} other problems`);
  return `${out.join('\n')}\n`;
}

export function formatCheck(report: CheckReport): string {
  const lines = report.checks.map((c) => `${c.status.padEnd(7)} ${c.name}: ${c.detail}`);
  lines.push(report.ok ? 'all checks passed' : `check failed (exit ${report.exitCode})`);
  return `${lines.join('\n')}\n`;
}

const ageText = (seconds: number | null) => (seconds === null ? '-' : seconds < 120 ? `${seconds} s` : seconds < 7200 ? `${Math.round(seconds / 60)} min` : seconds < 172800 ? `${(seconds / 3600).toFixed(1)} h` : `${(seconds / 86400).toFixed(1)} days`);

export function formatStatus(s: StatusReport): string {
  const out: string[] = [];
  out.push(`repository ${s.repository.location}: ${formatBytes(s.repository.bytes)} in ${s.repository.objects} objects (WAL ${formatBytes(s.repository.walBytes)}, backups ${formatBytes(s.repository.backupBytes)}, dumps ${formatBytes(s.repository.dumpBytes)})`);
  out.push(`  database system ${s.repository.systemIdentifier ?? '(no walship.json yet)'}${s.repository.pgMajor ? `, PostgreSQL ${s.repository.pgMajor}` : ''}${s.repository.encrypted ? ', encrypted' : ''}`);
  const b = s.backups;
  out.push(`backups: ${b.count} complete (${b.permanent} permanent), ${b.incomplete} incomplete`);
  if (b.newest) out.push(`  newest ${b.newest.name}, finished ${b.newest.stopTime} (${ageText(b.newest.ageSeconds)} ago)`);
  out.push(`WAL: ${s.wal.segments} segments, newest ${s.wal.newestSegment ?? '-'} archived ${ageText(s.wal.newestAgeSeconds)} ago, ${s.wal.gaps} gaps between archived segments`);
  const c = s.cluster;
  if (!c) out.push('cluster: not asked (--no-cluster)');
  else if (!c.reachable) out.push(`cluster: unreachable: ${c.error}`);
  else {
    out.push(`cluster: current ${c.currentWalFile ?? '(in recovery)'}, archive lag ${c.archiveLagSegments ?? '-'} segments (${c.archiveLagBytes === null ? '-' : formatBytes(c.archiveLagBytes)})${c.systemIdentifierMatches === false ? ', SYSTEM IDENTIFIER DIFFERS FROM THE REPOSITORY' : ''}`);
    out.push(`  archiver: last archived ${c.lastArchivedWal ?? '-'} at ${c.lastArchivedTime ?? '-'}, ${c.failedCount} failures${c.lastFailedWal ? `, last failed ${c.lastFailedWal} at ${c.lastFailedTime}` : ''}`);
  }
  return `${out.join('\n')}\n`;
}
