/**
 * The age STREAM payload's parameters and the pieces both encryptors share: a fresh file key
 * wrapped for the recipients, the payload key and nonces, one cipher per 64 KiB chunk. Also the
 * whole-buffer encryptor wal-push uses, kept apart from the stream classes (stream.ts) so that
 * wal-push, which runs once per WAL file, loads only this.
 */
import crypto from 'node:crypto';
import { releaseBuffer } from '../../buffers.ts';
import { usageError } from '../../errors.ts';
import { hkdf, serializeHeader } from './header.ts';
import type { Stanza } from './header.ts';
import { FILE_KEY_SIZE } from './keys.ts';
import type { AgeRecipient } from './keys.ts';

export const CHUNK_SIZE = 64 * 1024;
export const TAG_SIZE = 16;
export const NONCE_SIZE = 16;
export const ALGO = 'chacha20-poly1305';

/** The 12-byte STREAM nonce for chunk `counter` (counter < 2^53, far below 2^88). */
export function chunkNonce(nonce: Buffer, counter: number, last: boolean): Buffer {
  nonce.writeUInt32BE(Math.floor(counter / 0x1_0000_0000), 3);
  nonce.writeUInt32BE(counter >>> 0, 7);
  nonce[11] = last ? 1 : 0;
  return nonce;
}

export function payloadKey(fileKey: Buffer, nonce: Buffer): crypto.KeyObject {
  const raw = hkdf(fileKey, nonce, 'payload');
  const key = crypto.createSecretKey(raw);
  raw.fill(0);
  return key;
}

async function buildHeader(recipients: readonly AgeRecipient[], fileKey: Buffer): Promise<Buffer> {
  const stanzas: Stanza[] = [];
  for (const r of recipients) stanzas.push(...(await r.wrapFileKey(fileKey)));
  return serializeHeader(stanzas, fileKey);
}

export function checkRecipients(recipients: readonly AgeRecipient[]): void {
  if (recipients.length === 0) throw usageError('age encryption needs at least one recipient');
  if (recipients.some((r) => r.kind === 'scrypt') && recipients.length > 1) {
    throw usageError('an age passphrase (scrypt) must be the only recipient; it cannot be combined with other recipients');
  }
}

/** A fresh file key wrapped for every recipient: the header, the payload nonce and the payload key. */
export async function startPayload(recipients: readonly AgeRecipient[]): Promise<{ header: Buffer; nonce: Buffer; key: crypto.KeyObject }> {
  const fileKey = crypto.randomBytes(FILE_KEY_SIZE);
  try {
    const header = await buildHeader(recipients, fileKey);
    const nonce = crypto.randomBytes(NONCE_SIZE);
    return { header, nonce, key: payloadKey(fileKey, nonce) };
  } finally {
    fileKey.fill(0);
  }
}

export const chunkCipher = (key: crypto.KeyObject, nonce: Buffer, counter: number, last: boolean) =>
  crypto.createCipheriv(ALGO, key, chunkNonce(nonce, counter, last), { authTagLength: TAG_SIZE });

/**
 * The same age objects EncryptStream makes, for payloads already in memory (one WAL segment per
 * process, where the stream machinery costs more than the cipher). The header (a key exchange per
 * recipient) is made up front, so a caller can start it before the payload is ready; the returned
 * function then encrypts into `into` when it is large enough (memory already mapped) or a new buffer.
 */
export async function wholeEncryptor(recipients: readonly AgeRecipient[]): Promise<(data: Buffer, into?: Buffer) => Buffer> {
  checkRecipients(recipients);
  const { header, nonce, key } = await startPayload(recipients);
  return (data, into) => {
    // Every chunk is full but the last, which may be full too, and is empty only for an empty payload.
    const chunks = Math.max(1, Math.ceil(data.length / CHUNK_SIZE));
    const size = header.length + NONCE_SIZE + data.length + chunks * TAG_SIZE;
    const out = into && into.length >= size ? into.subarray(0, size) : Buffer.allocUnsafe(size);
    let at = header.copy(out, 0);
    at += nonce.copy(out, at);
    const chunkNonceBytes = Buffer.alloc(12);
    for (let i = 0; i < chunks; i++) {
      const cipher = chunkCipher(key, chunkNonceBytes, i, i === chunks - 1);
      const sealed = cipher.update(data.subarray(i * CHUNK_SIZE, (i + 1) * CHUNK_SIZE));
      at += sealed.copy(out, at);
      releaseBuffer(sealed);
      cipher.final();
      at += cipher.getAuthTag().copy(out, at);
    }
    return out;
  };
}

/** One payload in memory as an age object (see wholeEncryptor). */
export async function encryptWhole(data: Buffer, recipients: readonly AgeRecipient[]): Promise<Buffer> {
  return (await wholeEncryptor(recipients))(data);
}
