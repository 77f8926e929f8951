import { text } from 'node:stream/consumers';
import { integrityError, refusedError } from './errors.ts';
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
  let body: string;
  try {
    body = await text(await storage.get(keys.repositoryInfo));
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  try {
    const info = JSON.parse(body) as RepositoryInfo;
    if (typeof info.systemIdentifier !== 'string') throw new Error('no systemIdentifier');
    return info;
  } catch (err) {
    throw integrityError(`${storage.location}/${keys.repositoryInfo}: unreadable (${(err as Error).message})`);
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
