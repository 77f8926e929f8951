import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseStorageUrl } from '../../src/config/storage-url.ts';
import { openStorage } from '../../src/storage/open.ts';
import { storageConformance } from './conformance.ts';

storageConformance('file://', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'walship-file-'));
  return {
    // A file:// repository directory must exist beforehand (walship does not create it).
    open: async (prefix) => {
      await mkdir(join(dir, prefix), { recursive: true });
      return openStorage(parseStorageUrl(`file://${join(dir, prefix)}`), { timeoutSeconds: 60 });
    },
    teardown: () => rm(dir, { recursive: true, force: true }),
  };
});
