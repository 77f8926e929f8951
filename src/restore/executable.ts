import { existsSync, realpathSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { usageError } from '../errors.ts';

/**
 * The absolute, symlink-free path of the walship executable running now (bin/walship of this
 * installation), for a restore_command that works without PATH: PostgreSQL runs it with its own
 * environment.
 */
export function walshipExecutable(): string {
  const script = process.argv[1];
  if (script && basename(script) === 'launch.mjs') {
    const candidate = join(dirname(realpathSync(script)), 'walship');
    if (existsSync(candidate)) return realpathSync(candidate);
  }
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const candidate = join(dir, 'bin', 'walship');
    if (existsSync(candidate) && existsSync(join(dir, 'package.json'))) return realpathSync(candidate);
    if (dirname(dir) === dir) break;
  }
  throw usageError('cannot find the walship executable (bin/walship) of this installation to write restore_command');
}
