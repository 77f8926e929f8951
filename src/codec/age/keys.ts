/**
 * age recipients and identities: X25519 (age1… / AGE-SECRET-KEY-1…) and the
 * scrypt passphrase. Key material lives only in #private fields, so it never
 * shows up in util.inspect, JSON.stringify or error messages.
 */
import crypto from 'node:crypto';
import { bech32 } from '@scure/base';
import { integrityError, usageError } from '../../errors.ts';
import { b64decode, b64encode } from './base64.ts';
import { hkdf } from './header.ts';
import type { Stanza } from './header.ts';

export const FILE_KEY_SIZE = 16;
const X25519_INFO = 'age-encryption.org/v1/X25519';
const SCRYPT_SALT_LABEL = 'age-encryption.org/v1/scrypt';
const RECIPIENT_HRP = 'age';
const IDENTITY_HRP = 'age-secret-key-';
const IDENTITY_PREFIX = 'AGE-SECRET-KEY-1';

/** The work factor (log2 N) used when encrypting to a passphrase, as age does. */
export const SCRYPT_DEFAULT_WORK_FACTOR = 18;
/**
 * Decryption refuses work factors above 2^22, as age does: more would take
 * minutes and ~4 GiB+ of memory, and only an attacker would write such a file.
 */
export const SCRYPT_MAX_WORK_FACTOR = 22;
/**
 * Decision: walship also refuses work factors below 2^10, both when encrypting
 * and when decrypting (age accepts any). Below that scrypt is no longer a
 * meaningful brake on guessing, so such an object is not something walship
 * wrote (it always uses >= 10; the default is 18), and a configuration asking
 * for it is a mistake. 2^10 keeps test vectors fast.
 */
export const SCRYPT_MIN_WORK_FACTOR = 10;

const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');

function x25519Private(raw: Uint8Array): crypto.KeyObject {
  return crypto.createPrivateKey({ key: Buffer.concat([PKCS8_X25519, raw]), format: 'der', type: 'pkcs8' });
}
function x25519Public(raw: Uint8Array): crypto.KeyObject {
  return crypto.createPublicKey({ key: Buffer.concat([SPKI_X25519, raw]), format: 'der', type: 'spki' });
}
function rawPublic(key: crypto.KeyObject): Buffer {
  const der = key.export({ format: 'der', type: 'spki' });
  return der.subarray(der.length - 32);
}
/** X25519, or null when the result is all zeros (a low-order point). */
function x25519(privateKey: crypto.KeyObject, publicRaw: Uint8Array): Buffer | null {
  let shared: Buffer;
  try {
    shared = crypto.diffieHellman({ privateKey, publicKey: x25519Public(publicRaw) });
  } catch {
    return null; // OpenSSL refuses an all-zero shared secret
  }
  let acc = 0;
  for (const b of shared) acc |= b;
  return acc === 0 ? null : shared;
}

const ZERO_NONCE = Buffer.alloc(12);
/** ChaCha20-Poly1305 with an all-zero nonce, for wrapping a file key. */
function seal(key: Uint8Array, plaintext: Uint8Array): Buffer {
  const c = crypto.createCipheriv('chacha20-poly1305', key, ZERO_NONCE, { authTagLength: 16 });
  return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
}
function open(key: Uint8Array, sealed: Buffer): Buffer | null {
  if (sealed.length < 16) return null;
  const d = crypto.createDecipheriv('chacha20-poly1305', key, ZERO_NONCE, { authTagLength: 16 });
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  const out = d.update(sealed.subarray(0, sealed.length - 16));
  try {
    d.final();
  } catch {
    out.fill(0);
    return null;
  }
  return out;
}

function encodeRecipient(publicRaw: Uint8Array): string {
  return bech32.encode(RECIPIENT_HRP, bech32.toWords(publicRaw), false);
}

// ---------------------------------------------------------------- recipients

export class X25519Recipient {
  readonly kind = 'x25519' as const;
  readonly #publicKey: Buffer;
  readonly #text: string;
  constructor(publicRaw: Buffer) {
    this.#publicKey = publicRaw;
    this.#text = encodeRecipient(publicRaw);
  }
  /** The canonical age1… string (public). */
  toString(): string {
    return this.#text;
  }
  wrapFileKey(fileKey: Buffer): Stanza[] {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('x25519');
    const share = rawPublic(publicKey);
    const shared = x25519(privateKey, this.#publicKey);
    if (shared === null) throw usageError(`age recipient ${this.#text.slice(0, 12)}… is not a usable X25519 public key`);
    const wrapKey = hkdf(shared, Buffer.concat([share, this.#publicKey]), X25519_INFO);
    const body = seal(wrapKey, fileKey);
    shared.fill(0);
    wrapKey.fill(0);
    return [{ type: 'X25519', args: [b64encode(share)], body }];
  }
}

export class ScryptRecipient {
  readonly kind = 'scrypt' as const;
  readonly #passphrase: Buffer;
  readonly #workFactor: number;
  constructor(passphrase: Buffer, workFactor: number) {
    this.#passphrase = passphrase;
    this.#workFactor = workFactor;
  }
  get workFactor(): number {
    return this.#workFactor;
  }
  toString(): string {
    return `scrypt passphrase (work factor 2^${this.#workFactor})`;
  }
  async wrapFileKey(fileKey: Buffer): Promise<Stanza[]> {
    const salt = crypto.randomBytes(16);
    const wrapKey = await scryptKey(this.#passphrase, salt, this.#workFactor);
    const body = seal(wrapKey, fileKey);
    wrapKey.fill(0);
    return [{ type: 'scrypt', args: [b64encode(salt), String(this.#workFactor)], body }];
  }
}

export type AgeRecipient = X25519Recipient | ScryptRecipient;

function scryptKey(passphrase: Buffer, salt: Buffer, logN: number): Promise<Buffer> {
  const N = 2 ** logN;
  const r = 8;
  return new Promise((resolve, reject) => {
    crypto.scrypt(
      passphrase,
      Buffer.concat([Buffer.from(SCRYPT_SALT_LABEL, 'latin1'), salt]),
      32,
      { N, r, p: 1, maxmem: 256 * N * r + (32 << 20) },
      (err, key) => (err ? reject(integrityError(`scrypt failed: ${err.message}`)) : resolve(key)),
    );
  });
}

// ---------------------------------------------------------------- identities

export class X25519Identity {
  readonly kind = 'x25519' as const;
  readonly #privateKey: crypto.KeyObject;
  readonly #publicKey: Buffer;
  constructor(secretRaw: Buffer) {
    this.#privateKey = x25519Private(secretRaw);
    this.#publicKey = rawPublic(crypto.createPublicKey(this.#privateKey));
  }
  /** The public recipient that encrypts to this identity. */
  recipient(): X25519Recipient {
    return new X25519Recipient(this.#publicKey);
  }
  toString(): string {
    return `X25519 identity for ${encodeRecipient(this.#publicKey)}`;
  }
  /** Returns the file key if one stanza is ours, null if none is. Throws on malformed X25519 stanzas. */
  unwrap(stanzas: readonly Stanza[]): Buffer | null {
    for (const s of stanzas) {
      if (s.type !== 'X25519') continue;
      const share = s.args.length === 1 ? b64decode(s.args[0] as string) : null;
      if (share === null || share.length !== 32) throw integrityError('age header is malformed: bad X25519 stanza arguments');
      if (s.body.length !== FILE_KEY_SIZE + 16) throw integrityError('age header is malformed: bad X25519 stanza body');
      const shared = x25519(this.#privateKey, share);
      if (shared === null) throw integrityError('age header is malformed: X25519 stanza has a low-order share');
      const wrapKey = hkdf(shared, Buffer.concat([share, this.#publicKey]), X25519_INFO);
      const fileKey = open(wrapKey, s.body);
      shared.fill(0);
      wrapKey.fill(0);
      if (fileKey !== null) return fileKey;
    }
    return null;
  }
}

export class ScryptIdentity {
  readonly kind = 'scrypt' as const;
  readonly #passphrase: Buffer;
  constructor(passphrase: Buffer) {
    this.#passphrase = passphrase;
  }
  toString(): string {
    return 'scrypt passphrase identity';
  }
  /**
   * Returns the file key, or null if there is no scrypt stanza. A scrypt
   * stanza that this passphrase cannot open is an integrity error: it must be
   * the header's only stanza, so there is nothing else to try.
   */
  async unwrap(stanzas: readonly Stanza[]): Promise<Buffer | null> {
    const s = stanzas.find((st) => st.type === 'scrypt');
    if (s === undefined) return null;
    const logN = s.args.length === 2 ? checkedWorkFactor(s.args[1] as string) : null;
    const salt = s.args.length === 2 ? b64decode(s.args[0] as string) : null;
    if (logN === null || salt === null || salt.length !== 16) throw integrityError('age header is malformed: bad scrypt stanza arguments');
    if (s.body.length !== FILE_KEY_SIZE + 16) throw integrityError('age header is malformed: bad scrypt stanza body');
    const wrapKey = await scryptKey(this.#passphrase, salt, logN);
    const fileKey = open(wrapKey, s.body);
    wrapKey.fill(0);
    return fileKey;
  }
}

/** Parses and bounds a scrypt stanza's work factor before any work is spent on it. */
function checkedWorkFactor(text: string): number | null {
  if (!/^[1-9][0-9]{0,2}$/.test(text)) return null;
  const logN = Number(text);
  if (logN > SCRYPT_MAX_WORK_FACTOR) {
    throw integrityError(`age scrypt work factor 2^${logN} is absurdly high (the maximum is 2^${SCRYPT_MAX_WORK_FACTOR}); refusing to spend the time and memory`);
  }
  if (logN < SCRYPT_MIN_WORK_FACTOR) {
    throw integrityError(`age scrypt work factor 2^${logN} is too low (the minimum is 2^${SCRYPT_MIN_WORK_FACTOR}); walship did not write this object`);
  }
  return logN;
}

export type AgeIdentity = X25519Identity | ScryptIdentity;

// ---------------------------------------------------------------- parsing

/** A short, safe preview of text that may be anything the user typed. */
function preview(text: string): string {
  const t = text.trim();
  if (/^age-secret-key-/i.test(t)) return 'AGE-SECRET-KEY-…';
  const head = t.slice(0, 10).replace(/[^\x21-\x7e]/g, '?');
  return t.length > 10 ? `"${head}…"` : `"${head}"`;
}

/**
 * The X25519 public keys of small order, as libsodium lists them: 0, 1, the two points of order 8,
 * p-1, and p and p+1 (0 and 1 again, unreduced); bit 255 is ignored by X25519, so it is cleared
 * before comparing. A table, not a trial key exchange: parsing runs in every wal-push, and
 * wrapFileKey still refuses an all-zero shared secret.
 */
export const LOW_ORDER_POINTS = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
].map((hex) => Buffer.from(hex, 'hex'));

function isLowOrderPoint(raw: Uint8Array): boolean {
  const point = Buffer.from(raw);
  point[31]! &= 0x7f;
  return LOW_ORDER_POINTS.some((p) => p.equals(point));
}

export function parseRecipient(text: string): AgeRecipient {
  const t = text.trim();
  if (/^age-secret-key-/i.test(t)) {
    throw usageError('age recipient is a secret key (AGE-SECRET-KEY-…); give its public recipient (age1…) instead, e.g. from `walship keygen`');
  }
  if (/^age1pq1/.test(t)) throw usageError(`age recipient ${preview(t)} is a post-quantum recipient, which walship does not support yet`);
  if (!t.startsWith('age1')) throw usageError(`age recipient ${preview(t)} is not an X25519 recipient (age1…)`);
  let decoded: { prefix: string; words: number[] };
  try {
    if (t !== t.toLowerCase()) throw new Error('case');
    decoded = bech32.decode(t as `${string}1${string}`, false);
  } catch {
    throw usageError(`age recipient ${preview(t)} is malformed (bad bech32 encoding or checksum)`);
  }
  let raw: Uint8Array | null = null;
  try {
    raw = decoded.prefix === RECIPIENT_HRP ? bech32.fromWords(decoded.words) : null;
  } catch {
    raw = null;
  }
  if (raw === null || raw.length !== 32) throw usageError(`age recipient ${preview(t)} is malformed (not a 32-byte X25519 key)`);
  // A low-order point gives an all-zero shared secret for every key; refuse it now, not at the first push.
  if (isLowOrderPoint(raw)) throw usageError(`age recipient ${preview(t)} is not a usable X25519 public key`);
  return new X25519Recipient(Buffer.from(raw));
}

/** Lines of recipients; `#` comments and blank lines are ignored. */
export function parseRecipientsFile(text: string, path = 'recipients file'): AgeRecipient[] {
  const out: AgeRecipient[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    if (line === '' || line.startsWith('#')) continue;
    try {
      out.push(parseRecipient(line));
    } catch (err) {
      throw usageError(`${path} line ${i + 1}: ${(err as Error).message}`);
    }
  }
  if (out.length === 0) throw usageError(`${path} contains no recipients`);
  return out;
}

/** Parses one AGE-SECRET-KEY-1… string; errors never echo the text. */
export function parseIdentity(text: string, where = 'age identity'): X25519Identity {
  const t = text.trim();
  if (t.startsWith('AGE-SECRET-KEY-PQ-1') || t.startsWith('AGE-PLUGIN-')) {
    throw usageError(`${where} is of a kind walship does not support (only X25519 AGE-SECRET-KEY-1… identities)`);
  }
  if (!t.startsWith(IDENTITY_PREFIX)) throw usageError(`${where} is not an age identity (AGE-SECRET-KEY-1…)`);
  let raw: Uint8Array | null = null;
  try {
    if (t !== t.toUpperCase()) throw new Error('case');
    const decoded = bech32.decode(t as `${string}1${string}`, false);
    raw = decoded.prefix === IDENTITY_HRP ? bech32.fromWords(decoded.words) : null;
  } catch {
    raw = null;
  }
  if (raw === null || raw.length !== 32) throw usageError(`${where} is malformed (bad bech32 encoding, checksum or length)`);
  const secret = Buffer.from(raw);
  try {
    return new X25519Identity(secret);
  } finally {
    secret.fill(0);
    raw.fill(0);
  }
}

/** An identity file as age-keygen writes it: `#` comments, blank lines, one or more keys. */
export function parseIdentityFile(text: string, path: string): AgeIdentity[] {
  if (text.startsWith('age-encryption.org/') || text.startsWith('-----BEGIN AGE ENCRYPTED FILE-----')) {
    throw usageError(`identity file ${path} is itself encrypted; walship needs a plain identity file`);
  }
  const out: AgeIdentity[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    if (line === '' || line.startsWith('#')) continue;
    out.push(parseIdentity(line, `identity file ${path} line ${i + 1}`));
  }
  if (out.length === 0) throw usageError(`identity file ${path} contains no identities`);
  return out;
}

function checkPassphrase(passphrase: string): Buffer {
  if (typeof passphrase !== 'string' || passphrase.length === 0) throw usageError('age passphrase is empty');
  return Buffer.from(passphrase, 'utf8');
}

export function scryptRecipient(passphrase: string, workFactor: number = SCRYPT_DEFAULT_WORK_FACTOR): ScryptRecipient {
  if (!Number.isInteger(workFactor) || workFactor < SCRYPT_MIN_WORK_FACTOR || workFactor > SCRYPT_MAX_WORK_FACTOR) {
    throw usageError(`age scrypt work factor must be an integer from ${SCRYPT_MIN_WORK_FACTOR} to ${SCRYPT_MAX_WORK_FACTOR} (log2 N), got ${String(workFactor).slice(0, 12)}`);
  }
  return new ScryptRecipient(checkPassphrase(passphrase), workFactor);
}

export function scryptIdentity(passphrase: string): ScryptIdentity {
  return new ScryptIdentity(checkPassphrase(passphrase));
}

/** A fresh X25519 key pair, as the strings age-keygen prints. */
export function generateIdentity(): { identity: string; recipient: string } {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('x25519');
  const d = privateKey.export({ format: 'jwk' }).d as string;
  const secret = Buffer.from(d, 'base64url');
  const identity = bech32.encode(IDENTITY_HRP, bech32.toWords(secret), false).toUpperCase();
  secret.fill(0);
  return { identity, recipient: encodeRecipient(rawPublic(publicKey)) };
}

/**
 * A short public fingerprint: the first 16 hex digits of SHA-256 of the
 * recipient string. Safe to store in walship.json. A scrypt recipient has the
 * fixed fingerprint "scrypt": hashing the passphrase would hand out a cheap
 * guessing oracle.
 */
export function recipientFingerprint(r: AgeRecipient): string {
  if (r.kind === 'scrypt') return 'scrypt';
  return crypto.createHash('sha256').update(r.toString()).digest('hex').slice(0, 16);
}

/** The fingerprint of the recipient matching an identity (null for a passphrase). */
export function identityFingerprint(id: AgeIdentity): string | null {
  return id.kind === 'x25519' ? recipientFingerprint(id.recipient()) : null;
}
