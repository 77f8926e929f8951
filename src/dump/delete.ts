import { log } from '../log.ts';
import { keys } from '../repository.ts';
import type { Storage } from '../storage/storage.ts';

/**
 * Delete whole dumps: the manifest first (from then on no listing shows the dump, and a
 * LATEST never picks it), then every other object under dumps/<name>/. An interrupted delete
 * leaves only objects without a manifest, which the next retention run removes.
 */
export async function deleteDumps(storage: Storage, names: readonly string[]): Promise<void> {
  for (const name of names) {
    await storage.delete([keys.dumpManifest(name)]);
    const rest: string[] = [];
    for await (const object of storage.list(keys.dumpPrefix(name))) rest.push(object.key);
    if (rest.length) await storage.delete(rest);
    log.info('dump deleted', { name, objects: rest.length + 1 });
  }
}
