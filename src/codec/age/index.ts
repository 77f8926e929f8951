/**
 * age v1 encryption for walship objects (DESIGN §3 "Object format"):
 * X25519 recipients/identities and scrypt passphrases, STREAM payload on
 * node:crypto. Objects are readable with `age -d -i key.txt`.
 */
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Transform } from 'node:stream';
import { encryptWhole } from './payload.ts';
import { createDecryptStream } from './stream.ts';
import type { AgeIdentity, AgeRecipient } from './keys.ts';

export type { AgeIdentity, AgeRecipient } from './keys.ts';
export {
  generateIdentity,
  identityFingerprint,
  parseIdentity,
  parseIdentityFile,
  parseRecipient,
  parseRecipientsFile,
  recipientFingerprint,
  scryptIdentity,
  scryptRecipient,
  SCRYPT_DEFAULT_WORK_FACTOR,
  SCRYPT_MAX_WORK_FACTOR,
  SCRYPT_MIN_WORK_FACTOR,
} from './keys.ts';
export { CHUNK_SIZE, encryptWhole, wholeEncryptor } from './payload.ts';
export { createDecryptStream, createEncryptStream, isAgeEncrypted } from './stream.ts';

async function runThrough(transform: Transform, data: Uint8Array): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(
    Readable.from([Buffer.from(data.buffer, data.byteOffset, data.byteLength)]),
    transform,
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        out.push(chunk);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}

/** Encrypts a whole buffer. */
export function encryptBuffer(data: Uint8Array, recipients: readonly AgeRecipient[]): Promise<Buffer> {
  return encryptWhole(Buffer.from(data.buffer, data.byteOffset, data.byteLength), recipients);
}

/** Decrypts a whole buffer (for tests and small objects). */
export function decryptBuffer(data: Uint8Array, identities: readonly AgeIdentity[]): Promise<Buffer> {
  return runThrough(createDecryptStream(identities), data);
}
