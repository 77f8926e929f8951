import type { Config } from '../config/settings.ts';
import type { Encryption } from './codec.ts';

/** Encryption as configured (recipients for writing, identity or passphrase for reading). */
export async function encryptionFromConfig(_config: Config): Promise<Encryption | undefined> {
  return undefined;
}
