import type { Command } from 'commander';
import { action, settingsHelp } from './context.ts';
import { settings } from '../config/settings.ts';

export function register(program: Command): void {
  const command = program
    .command('wal-verify')
    .description('check that the archived WAL is continuous from the oldest backup to the newest segment, and intact')
    .option('--json', 'one JSON object on stdout')
    .option('--no-decode', 'check continuity only (no object is read)')
    .option('--all', 'also decode archived WAL no backup needs')
    .option('--waldump [path]', 'also decode every record with pg_waldump (default: found in PATH or /usr/lib/postgresql/*/bin; segments of other majors are skipped)')
    .addHelpText(
      'after',
      `
Continuity: every segment from the start of the oldest non-permanent backup (the WAL 'delete' keeps)
to the newest archived segment of the newest timeline, following .history files across
promotions, and each backup's own start..stop segments. Integrity: each of those objects decodes
(checksums, decryption), is wal_segment_size long, and its first page header has PostgreSQL's
magic, the address its name implies and the repository's system identifier.

Exit codes: 0 all good; 3 WAL is missing (a gap, a missing .history file; each reported with the
segment names); 4 an object is corrupt (named; wins over 3); 2, 5 as for every command.
`,
    )
    .addHelpText('after', settingsHelp(['storage', 'identityFile', 'passphraseFile', 'downloadConcurrency', 'storageTimeout', 'logFormat', 'logLevel'], settings));
  command.action(
    action('wal-verify', async (ctx) => {
      const flags = command.opts<{ json?: boolean; decode: boolean; all?: boolean; waldump?: string | boolean }>();
      const { loadBackupCatalog } = await import('../retention/catalog.ts');
      const { loadInventory } = await import('../wal/inventory.ts');
      const { verifyArchive, verifyExitCode, findWaldump } = await import('../wal/verify.ts');
      const { verifyJson, formatVerify } = await import('../retention/format.ts');
      const { readRepositoryInfo } = await import('../repository.ts');
      const { usageError } = await import('../errors.ts');
      const storage = await ctx.storage();
      const encryption = await ctx.encryption();
      let waldump: Map<number, string> | undefined;
      if (flags.waldump) {
        waldump = await findWaldump(typeof flags.waldump === 'string' ? flags.waldump : undefined);
        if (waldump.size === 0) throw usageError(`--waldump: no usable pg_waldump${typeof flags.waldump === 'string' ? ` at ${flags.waldump}` : ' in PATH or /usr/lib/postgresql/*/bin'}`);
      }
      const info = await readRepositoryInfo(storage);
      if (flags.decode && info?.encryption && !encryption?.decrypt) {
        throw usageError('the repository is encrypted: set WALSHIP_IDENTITY_FILE (or WALSHIP_PASSPHRASE_FILE) to verify its objects, or use --no-decode for continuity only');
      }
      const catalog = await loadBackupCatalog(storage, encryption);
      const { inventory, histories } = await loadInventory(storage, encryption, catalog.segmentSize);
      const report = await verifyArchive(storage, encryption, { inventory, histories, backups: catalog.backups }, {
        decode: flags.decode,
        all: flags.all,
        waldump,
        concurrency: ctx.config.downloadConcurrency,
        systemIdentifier: info?.systemIdentifier,
      });
      const code = verifyExitCode(report);
      process.stdout.write(flags.json ? `${JSON.stringify(verifyJson(report, code), null, 2)}\n` : formatVerify(report, code));
      return code;
    }),
  );
}
