import { createHash } from 'node:crypto';
import { decodeObject, type Encryption } from '../codec/codec.ts';
import type { Storage } from '../storage/storage.ts';

/** SHA-256 (hex) of a stored object's decoded payload. */
export async function digestOfObject(storage: Storage, key: string, encryption: Encryption | undefined): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of decodeObject(await storage.get(key), encryption, `${storage.location}/${key}`)) hash.update(chunk);
  return hash.digest('hex');
}
