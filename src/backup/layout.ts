import { join, resolve, sep } from 'node:path';
import { integrityError } from '../errors.ts';
import { controlFilePath } from '../pg/control-file.ts';
import { unsafePath } from './manifest.ts';

/** Files restore writes from the manifest, never from a tar entry. */
export const fromManifest = new Set(['backup_label', 'tablespace_map']);
/** pg_control is laid down under this name and renamed last, so a failed fetch can never start. */
export const controlTemp = `${controlFilePath}.walship-partial`;

export interface TablespacePlan {
  oid: string;
  original: string;
  location: string;
  created: boolean;
}

/** Where a backup path goes: tablespace content to its (possibly remapped) location, the rest under the target. */
export class Layout {
  readonly target: string;
  readonly tablespaces: { oid: string; location: string }[];
  readonly #locations: Map<string, string>;

  constructor(target: string, tablespaces: readonly Pick<TablespacePlan, 'oid' | 'location'>[]) {
    this.target = target;
    this.tablespaces = tablespaces.map((t) => ({ oid: t.oid, location: t.location }));
    this.#locations = new Map(tablespaces.map((t) => [t.oid, t.location]));
  }

  destination(path: string): string {
    const problem = unsafePath(path);
    if (problem) throw integrityError(`refusing ${JSON.stringify(path)}: ${problem}`);
    const m = /^pg_tblspc\/(\d+)\/(.+)$/.exec(path);
    const location = m ? this.#locations.get(m[1]!) : undefined;
    const [root, rest] = location ? [location, m![2]!] : [this.target, path];
    const dest = resolve(root, rest);
    if (!dest.startsWith(root + sep)) throw integrityError(`refusing ${JSON.stringify(path)}: it leaves the target directory`);
    return path === controlFilePath ? join(this.target, controlTemp) : dest;
  }
}
