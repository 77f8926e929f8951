import type { Command } from 'commander';
import { action, settingsHelp } from './context.ts';
import { settings } from '../config/settings.ts';
import { usageError } from '../errors.ts';

const help = `
Rules:
  retain N            keep the N newest non-permanent backups, delete older ones
  before <backup>     delete non-permanent backups older than <backup> (which is kept)
  before <time>       keep what restoring to <time> needs (the newest backup that ended by then)
                      and everything newer; delete older non-permanent backups
  garbage             delete only leftovers: backups without a manifest (interrupted backup-push
                      or delete) and temporary files untouched for --garbage-age, and WAL older
                      than the oldest complete backup

Every rule also removes that garbage and the WAL no kept backup needs: WAL older than the start of
the oldest kept non-permanent backup, except each older kept backup's own start..stop segments.
.history files are never deleted. Permanent backups (backup-push --permanent, backup-mark) are
never deleted and do not count towards N; the newest backup is never deleted. Backups are ordered
by their manifests' start time and LSN, never by storage listing order or dates.

Without --confirm nothing is deleted: the plan is printed (what goes, what stays and why, counts
and bytes). With --confirm the deletion order is safe if interrupted: each backup's manifest goes
first (it stops being a backup), WAL goes last, oldest first; run the command again to finish.

Cron:
  30 3 * * *  walship delete retain 7 --confirm
`;

export function register(program: Command): void {
  const command = program
    .command('delete')
    .description('retention: delete old backups and the WAL no kept backup needs (dry run unless --confirm)')
    .argument('<rule>', 'retain, before or garbage')
    .argument('[value]', 'retain: how many backups to keep; before: a backup name or a time')
    .option('--confirm', 'really delete (default: print what would be deleted)')
    .option('--json', 'print the plan (and what was deleted) as JSON')
    .option('--garbage-age <duration>', 'how long leftovers must be untouched before they count as garbage (30m, 6h, 2d)', '6h')
    .option('--dumps', 'apply the rule to logical dumps (dump-push) instead of base backups and WAL')
    .option('--dbname <name>', 'with --dumps: only the dumps of this database')
    .addHelpText('after', help)
    .addHelpText('after', settingsHelp(['storage', 'identityFile', 'passphraseFile', 'storageTimeout', 'logFormat', 'logLevel'], settings));
  command.action(
    action('delete', async (ctx, ruleWord: string, value: string | undefined) => {
      const flags = command.opts<{ confirm?: boolean; json?: boolean; garbageAge: string; dumps?: boolean; dbname?: string }>();
      const { parseDuration, parseTime, defaultGarbageAgeMs } = await import('../retention/plan.ts');
      const garbageAgeMs = parseDuration(flags.garbageAge);
      if (!Number.isFinite(garbageAgeMs) || garbageAgeMs < 0) throw usageError(`--garbage-age ${flags.garbageAge}: expected a duration such as 30m, 6h or 2d`);
      if (garbageAgeMs < 15 * 60_000) throw usageError(`--garbage-age ${flags.garbageAge}: at least 15m, so a backup or push still running is never taken for garbage`);
      const rule = parseRule(ruleWord, value, parseTime);
      const storage = await ctx.storage();
      const encryption = await ctx.encryption();
      const confirm = Boolean(flags.confirm);
      if (flags.dumps) {
        await deleteDumps(storage, encryption, rule, { confirm, json: Boolean(flags.json), garbageAgeMs, database: flags.dbname });
        return;
      }
      if (flags.dbname) throw usageError('--dbname goes with --dumps');

      const { loadBackupCatalog } = await import('../retention/catalog.ts');
      const { listArchivedWal, detectSegmentSize } = await import('../wal/inventory.ts');
      const { planRetention } = await import('../retention/plan.ts');
      const { executePlan, findTempFiles } = await import('../retention/execute.ts');
      const { formatPlan, planJson } = await import('../retention/format.ts');
      const { parseStorageUrl } = await import('../config/storage-url.ts');

      const catalog = await loadBackupCatalog(storage, encryption);
      const listing = await listArchivedWal(storage);
      const segmentSize = await detectSegmentSize(storage, listing, encryption, catalog.segmentSize);
      if (segmentSize === undefined && catalog.backups.length) throw usageError('cannot tell wal_segment_size from the backups or the archived WAL');
      const url = parseStorageUrl(ctx.config.storage!, 'setting storage (WALSHIP_STORAGE)');
      const temp = url.scheme === 'file' ? await findTempFiles(url.path) : [];
      const plan = planRetention({
        rule,
        backups: catalog.backups,
        incomplete: catalog.incomplete,
        wal: listing.files,
        temp,
        segmentSize: segmentSize ?? 16 * 1024 * 1024,
        now: new Date(),
        garbageAgeMs: garbageAgeMs ?? defaultGarbageAgeMs,
      });
      if (!flags.json) process.stdout.write(formatPlan(plan, segmentSize ?? 16 * 1024 * 1024, confirm));
      if (!confirm) {
        if (flags.json) process.stdout.write(`${JSON.stringify(planJson(plan, false), null, 2)}\n`);
        return;
      }
      const result = await executePlan(storage, plan);
      if (flags.json) process.stdout.write(`${JSON.stringify(planJson(plan, true, result), null, 2)}\n`);
      else {
        const { formatBytes } = await import('../backup/progress.ts');
        process.stdout.write(
          `deleted: ${result.backups} backups, ${result.incomplete} incomplete backups, ${result.wal} WAL files, ${result.temp} temporary files (${result.objects} objects, ${formatBytes(result.bytes)})${
            result.skipped.length ? `; kept ${result.skipped.join(', ')} (changed since the plan; WAL left for the next run)` : ''
          }\n`,
        );
      }
    }),
  );
}

type Rule = import('../retention/plan.ts').RetentionRule;

function parseRule(word: string, value: string | undefined, parseTime: (v: string) => Date | undefined): Rule {
  switch (word) {
    case 'retain': {
      if (value === undefined || !/^\d+$/.test(value) || Number(value) < 1) throw usageError(`delete retain ${value ?? ''}: give how many backups to keep, 1 or more (delete retain 7)`);
      return { kind: 'retain', count: Number(value) };
    }
    case 'before': {
      if (value === undefined) throw usageError("delete before: give a backup name or a time ('2026-11-27 14:05:00+00')");
      if (/^\d{4}-\d\d-\d\d/.test(value)) {
        // A time without its zone would mean the server's local time: too easy to get wrong in cron.
        if (!/\d\d:\d\d(?::\d\d(?:\.\d+)?)?\s*(?:Z|[+-]\d\d(?::?\d\d)?)$/i.test(value.trim())) throw usageError(`delete before ${value}: give the time with its zone ('2026-11-27 14:05:00+00' or 2026-11-27T14:05:00Z)`);
        const time = parseTime(value);
        if (!time) throw usageError(`delete before ${value}: not a time (use '2026-11-27 14:05:00+00' or ISO 8601)`);
        return { kind: 'before-time', time };
      }
      return { kind: 'before-backup', name: value };
    }
    case 'garbage':
      if (value !== undefined) throw usageError(`delete garbage takes no value (got '${value}')`);
      return { kind: 'garbage' };
    default:
      throw usageError(`delete ${word}: expected retain N, before <backup|time> or garbage`);
  }
}

async function deleteDumps(
  storage: import('../storage/storage.ts').Storage,
  encryption: import('../codec/codec.ts').Encryption | undefined,
  rule: Rule,
  options: { confirm: boolean; json: boolean; garbageAgeMs: number; database: string | undefined },
): Promise<void> {
  const { listDumps, scanDumps } = await import('../dump/manifest.ts');
  const { planDumpRetention } = await import('../dump/retention.ts');
  const { deleteDumps: remove } = await import('../dump/delete.ts');
  const manifests = await listDumps(storage, encryption);
  const scanned = await scanDumps(storage);
  const incomplete = [...scanned].filter(([, e]) => !e.complete).map(([name, e]) => ({ name, modified: e.modified }));
  const plan = planDumpRetention(manifests, { rule, database: options.database, confirm: options.confirm, incomplete, garbageAgeMs: options.garbageAgeMs });
  if (options.json) process.stdout.write(`${JSON.stringify(plan, null, 2)}\n`);
  else {
    const lines = [`walship delete --dumps${options.confirm ? '' : ': dry run, nothing is deleted (add --confirm to delete)'}`];
    for (const d of plan.keep) lines.push(`  keep   ${d.name}  ${d.started}  (${d.reason})`);
    for (const d of plan.delete) lines.push(`  delete ${d.name}  ${d.started}  (${d.reason})`);
    lines.push(`${options.confirm ? 'deleting' : 'would delete'}: ${plan.delete.length} dumps`);
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  if (options.confirm) await remove(storage, plan.delete.map((d) => d.name));
}
