import { text } from 'node:stream/consumers';
import { integrityError, refusedError } from './errors.ts';
import { log } from './log.ts';
import { isExists, isNotFound, type Storage } from './storage/storage.ts';

/** Where things live in a repository (DESIGN §3). */
export const keys = {
  repositoryInfo: 'walship.json',
  walPrefix: 'wal/',
  wal: (name: string) => `wal/${name}`,
  backupsPrefix: 'backups/',
  backupPrefix: (name: string) => `backups/${name}/`,
  backupPart: (name: string, part: number) => `backups/${name}/parts/${String(part).padStart(4, '0')}.tar`,
  backupManifest: (name: string) => `backups/${name}/manifest.json`,
  /** Unencrypted listing facts of a complete backup (no paths, no label), written just before the manifest. */
  backupSummary: (name: string) => `backups/${name}/summary.json`,
  /** backup-mark's pin (JSON {"permanent": bool}); overrides the manifest's permanent flag without rewriting the backup. */
  backupMark: (name: string) => `backups/${name}/mark.json`,
  /** Written by `delete` before it removes a backup's manifest: leftovers carrying it are garbage at once, not a backup-push in progress. */
  backupDeleting: (name: string) => `backups/${name}/deleting`,
  dumpsPrefix: 'dumps/',
  dumpPrefix: (name: string) => `dumps/${name}/`,
  /** One payload of a dump: `dump` (one database, pg_dump -Fc), `globals.sql`, `databases/<nnnn>.dump`. */
  dumpFile: (name: string, file: string) => `dumps/${name}/${file}`,
  /** Written last: its presence means the dump is complete. */
  dumpManifest: (name: string) => `dumps/${name}/manifest.json`,
};

export const repositoryFormat = 1;

/** walship.json: public facts about the repository; never secrets. */
export interface RepositoryInfo {
  format: number;
  systemIdentifier: string;
  pgMajor?: number | undefined;
  created: string;
  /** Set when the repository's objects are encrypted: public fingerprints of the recipients. */
  encryption?: { recipients: string[]; passphrase?: boolean } | undefined;
  walshipVersion?: string;
}

export async function readRepositoryInfo(storage: Storage): Promise<RepositoryInfo | undefined> {
  // An empty body is read again a few times: stores that write objects non-atomically (s3rver;
  // some S3-compatible servers) show a walship.json being created by a concurrent first push
  // as empty for a moment. Anything else unreadable is corruption at once.
  for (let attempt = 1; ; attempt++) {
    let body: string;
    try {
      body = await text(await storage.get(keys.repositoryInfo));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    if (body === '' && attempt < 5) {
      await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
      continue;
    }
    try {
      const info = JSON.parse(body) as RepositoryInfo;
      if (typeof info.systemIdentifier !== 'string') throw new Error('no systemIdentifier');
      return info;
    } catch (err) {
      throw integrityError(`${storage.location}/${keys.repositoryInfo}: unreadable (${(err as Error).message})`);
    }
  }
}

/**
 * Make sure the repository belongs to this cluster: create walship.json on first use, refuse
 * (exit 3) when it was made for another system identifier, so two clusters never mix their WAL.
 */
export async function claimRepository(
  storage: Storage,
  cluster: { systemIdentifier: bigint; pgMajor?: number | undefined },
  initial?: Partial<RepositoryInfo>,
): Promise<RepositoryInfo> {
  const sysid = cluster.systemIdentifier.toString();
  let info = await readRepositoryInfo(storage);
  if (!info) {
    const fresh: RepositoryInfo = { format: repositoryFormat, systemIdentifier: sysid, pgMajor: cluster.pgMajor, created: new Date().toISOString(), ...initial };
    try {
      await storage.put(keys.repositoryInfo, Buffer.from(`${JSON.stringify(fresh, null, 2)}\n`), { ifAbsent: true });
      return fresh;
    } catch (err) {
      if (!isExists(err)) throw err;
      info = await readRepositoryInfo(storage);
      if (!info) throw err;
    }
  }
  if (info.systemIdentifier !== sysid) {
    throw refusedError(
      `repository ${storage.location} belongs to database system ${info.systemIdentifier}, not to this cluster (${sysid}); use a separate repository per cluster`,
    );
  }
  return info;
}

/** The public record of a repository's encryption in walship.json: recipient fingerprints, passphrase flag. */
export type RepositoryEncryption = NonNullable<RepositoryInfo['encryption']>;

const sameEncryption = (a: RepositoryEncryption, b: RepositoryEncryption) =>
  Boolean(a.passphrase) === Boolean(b.passphrase) && [...a.recipients].sort().join(',') === [...b.recipients].sort().join(',');

const describeEncryption = (e: RepositoryEncryption) =>
  [e.passphrase ? 'passphrase' : '', e.recipients.length ? `recipients ${e.recipients.join(',')}` : ''].filter(Boolean).join(' + ') || 'none';

/**
 * Every writer calls this before storing objects, with what it will encrypt to (`writing`,
 * undefined when it writes unencrypted; see encryptionRecord in codec/keys.ts) and the
 * repository's walship.json (`info`; read here when not given, nothing to check when absent).
 * - encrypted repository, unencrypted writer: refused (exit 3) unless `allowUnencrypted`;
 * - unencrypted repository, encrypted writer: walship.json starts recording the encryption;
 * - a different recipient set (key rotation, an added escrow key): allowed, logged once, recorded.
 * Only public fingerprints are stored or logged.
 */
export async function checkRepositoryEncryption(
  storage: Storage,
  info: RepositoryInfo | undefined,
  writing: RepositoryEncryption | undefined,
  options: { allowUnencrypted?: boolean | undefined } = {},
): Promise<void> {
  info ??= await readRepositoryInfo(storage);
  if (!info) return;
  const recorded = info.encryption;
  if (!writing) {
    if (!recorded) return;
    if (!options.allowUnencrypted) {
      throw refusedError(
        `repository ${storage.location} is encrypted (walship.json: ${describeEncryption(recorded)}) but no recipients are configured (WALSHIP_RECIPIENTS, WALSHIP_RECIPIENTS_FILE or WALSHIP_PASSPHRASE_FILE); refusing to store unencrypted objects in it (set WALSHIP_ALLOW_UNENCRYPTED=true to do it anyway)`,
      );
    }
    log.warn('storing an unencrypted object in an encrypted repository, as WALSHIP_ALLOW_UNENCRYPTED allows', { repository: storage.location });
    return;
  }
  if (recorded && sameEncryption(recorded, writing)) return;
  if (recorded) {
    log.info('encryption recipients differ from those walship.json records (key rotation?); new objects use the configured ones, recording them', {
      was: describeEncryption(recorded),
      now: describeEncryption(writing),
    });
  } else {
    log.info('repository was unencrypted; new objects are encrypted, recording that in walship.json', { now: describeEncryption(writing) });
  }
  const updated: RepositoryInfo = { ...info, encryption: writing };
  await storage.put(keys.repositoryInfo, Buffer.from(`${JSON.stringify(updated, null, 2)}\n`));
}
