import { mkdir, readdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { FileHandle } from 'node:fs/promises';

/**
 * A note, kept in pg_wal/walship/pushed/<name>, that this host stored this very WAL file (same
 * inode, size and modification time) durably in this repository. PostgreSQL pushes a file again
 * when it crashed before recording the first push; a host that has only age recipients cannot
 * decrypt the stored object to compare, and without this note it would have to refuse, and
 * archiving would stall until someone compared by hand. WAL files are immutable once ready, and
 * a recycled one gets a new modification time, so a matching note means identical content.
 * Local state (DESIGN §3): only for files in a directory named pg_wal; pruned as the WAL files go.
 */
const recordDir = (walPath: string) => join(dirname(walPath), 'walship', 'pushed');

const fingerprint = async (handle: FileHandle, location: string) => {
  const info = await handle.stat({ bigint: true });
  return `${info.ino} ${info.size} ${info.mtimeNs}\n${location}\n`;
};

const inPgWal = (walPath: string) => basename(dirname(walPath)) === 'pg_wal';

/** Note a durable push. Best effort: a missing note only means a later re-push compares or refuses. */
export async function recordPush(walPath: string, handle: FileHandle, location: string): Promise<void> {
  if (!inPgWal(walPath)) return;
  const dir = recordDir(walPath);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFile(join(dir, basename(walPath)), await fingerprint(handle, location), { mode: 0o600 });
    // Prune now and then (the last hex digit of the name is 0: one push in 16): notes whose WAL
    // file PostgreSQL has removed or recycled can never be needed again.
    if (basename(walPath).endsWith('0')) await pruneRecords(dirname(walPath), dir);
  } catch {
    // The note is an optimisation of a rare path; never fail an archived push over it.
  }
}

/** Whether this host already stored this very file in this repository. */
export async function pushedBefore(walPath: string, handle: FileHandle, location: string): Promise<boolean> {
  if (!inPgWal(walPath)) return false;
  const note = await readFile(join(recordDir(walPath), basename(walPath)), 'utf8').catch(() => undefined);
  return note !== undefined && note === (await fingerprint(handle, location));
}

async function pruneRecords(pgWal: string, dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    if (!(await stat(join(pgWal, name)).catch(() => undefined))) await unlink(join(dir, name)).catch(() => {});
  }
}
