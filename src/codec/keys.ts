/**
 * Encryption as configured (DESIGN §7): recipients for writing, an identity file or a passphrase
 * for reading. Turns the settings into the codec's `Encryption` stream factories, and into the
 * public record walship.json keeps (fingerprints only).
 *
 * Rules:
 * - `recipients` and `recipientsFile` together are the recipients of new objects (deduplicated).
 * - `passphraseFile` alone encrypts and decrypts with age scrypt. With recipients set as well, the
 *   recipients win for writing (age allows a passphrase only as an object's sole recipient) and
 *   the passphrase only reads (older objects, during a move from passphrase to keys).
 * - `identityFile` (one or more AGE-SECRET-KEY-1 lines) reads; it never makes walship encrypt.
 * - A bad setting is a usage error (exit 2) naming it; no message ever contains key material or
 *   passphrase text. A secret file readable by group or others is one warning, not an error.
 *
 * The age module is imported only when a key setting is present, so unencrypted pushes do not
 * load it.
 */
import { statSync } from 'node:fs';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { settings, type Config, type SettingKey } from '../config/settings.ts';
import { refusedError, usageError, WalshipError } from '../errors.ts';
import { log } from '../log.ts';
import type { RepositoryEncryption } from '../repository.ts';
import type { Encryption } from './codec.ts';
import type { AgeIdentity, AgeRecipient } from './age/keys.ts';

type Age = typeof import('./age/keys.ts');

/** What walship.json records about the encryption of objects written with this configuration. */
const records = new WeakMap<Encryption, RepositoryEncryption>();

/** The public record of what `encryption` encrypts to; undefined when it does not encrypt. */
export function encryptionRecord(encryption: Encryption | undefined): RepositoryEncryption | undefined {
  return encryption ? records.get(encryption) : undefined;
}

const setting = (key: SettingKey) => `setting ${key} (${settings[key].env})`;

/** Encryption as configured, or undefined when no key setting is present. */
export async function encryptionFromConfig(config: Config): Promise<Encryption | undefined> {
  const listed = config.recipients ?? [];
  if (listed.length === 0 && !config.recipientsFile && !config.identityFile && !config.passphraseFile) return undefined;
  // The key parsers and the whole-buffer encryptor only: wal-push needs no more, and runs once per
  // WAL file. The stream classes load when first used.
  const [age, payload] = await Promise.all([import('./age/keys.ts'), import('./age/payload.ts')]);
  const streams = () => import('./age/stream.ts');

  const recipients: AgeRecipient[] = [];
  const seen = new Set<string>();
  const add = (r: AgeRecipient) => {
    if (!seen.has(r.toString())) {
      seen.add(r.toString());
      recipients.push(r);
    }
  };
  listed.forEach((text, i) => add(parseRecipientSafely(age, text, `${setting('recipients')}: entry ${i + 1}`)));
  if (config.recipientsFile) {
    const text = await readSettingFile('recipientsFile', config.recipientsFile, false);
    let count = 0;
    text.split(/\r?\n/).forEach((line, i) => {
      const t = line.trim();
      if (t === '' || t.startsWith('#')) return;
      add(parseRecipientSafely(age, t, `${setting('recipientsFile')}: ${config.recipientsFile} line ${i + 1}`));
      count++;
    });
    if (count === 0) throw usageError(`${setting('recipientsFile')}: ${config.recipientsFile} contains no recipients`);
  }

  const identities: AgeIdentity[] = [];
  if (config.identityFile) {
    const text = await readSettingFile('identityFile', config.identityFile, true);
    try {
      identities.push(...age.parseIdentityFile(text, config.identityFile));
    } catch (err) {
      throw usageError(`${setting('identityFile')}: ${(err as Error).message}`);
    }
  }

  let passphrase: string | undefined;
  if (config.passphraseFile) {
    // Only line breaks are trimmed (as `echo pass > file` leaves one); other whitespace is part of the passphrase.
    passphrase = (await readSettingFile('passphraseFile', config.passphraseFile, true)).replace(/[\r\n]+$/, '');
    if (passphrase === '') throw usageError(`${setting('passphraseFile')}: ${config.passphraseFile} is empty`);
    identities.push(age.scryptIdentity(passphrase));
  }

  const encryption: Encryption = {};
  if (recipients.length > 0) {
    const writeTo = recipients;
    encryption.encrypt = async () => coalesced((await streams()).createEncryptStream(writeTo));
    encryption.wholeEncryptor = () => payload.wholeEncryptor(writeTo);
    records.set(encryption, { recipients: recipients.map(age.recipientFingerprint).sort() });
  } else if (passphrase !== undefined) {
    const writeTo = [age.scryptRecipient(passphrase, config.passphraseWorkFactor)];
    encryption.encrypt = async () => coalesced((await streams()).createEncryptStream(writeTo));
    encryption.wholeEncryptor = () => payload.wholeEncryptor(writeTo);
    records.set(encryption, { recipients: [], passphrase: true });
  }
  if (identities.length > 0) {
    const readWith = identities;
    encryption.decrypt = async () => (await streams()).createDecryptStream(readWith);
  }
  if (log.enabled('debug')) {
    log.debug('encryption configured', {
      encryptTo: recipients.length > 0 ? recipients.map(age.recipientFingerprint).join(',') : passphrase !== undefined ? 'passphrase' : 'none',
      identities: identities.filter((id) => id.kind === 'x25519').length,
      passphrase: passphrase !== undefined,
    });
  }
  return encryption;
}

/**
 * The age stream pushes each 64 KiB chunk as several buffers (ciphertext pieces, then the 16-byte
 * tag), so storage would see ~3 writes per 64 KiB instead of one per compressed block; measured on
 * a 16 MiB segment, that alone cost ~10 ms of CPU per wal-push (file:// writes). Gather its output
 * into ~1 MiB buffers: one extra copy of the compressed data (~1 ms), bounded memory. (The codec
 * only composes the stage into its pipeline, so the composed Duplex stands in for a Transform.)
 */
const COALESCE_BYTES = 1 << 20;
class Coalesce extends Transform {
  #parts: Buffer[] = [];
  #size = 0;
  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.#parts.push(chunk);
    this.#size += chunk.length;
    if (this.#size >= COALESCE_BYTES) this.#release();
    done();
  }
  override _flush(done: TransformCallback): void {
    if (this.#size > 0) this.#release();
    done();
  }
  #release(): void {
    this.push(this.#parts.length === 1 ? this.#parts[0] : Buffer.concat(this.#parts, this.#size));
    this.#parts = [];
    this.#size = 0;
  }
}
const coalesced = (stage: Transform): Transform => stage.compose(new Coalesce());

/**
 * parseRecipient, with a message that never shows what was typed unless it is plainly a public
 * recipient (age1…): a secret key or passphrase pasted into the wrong setting stays unprinted.
 */
function parseRecipientSafely(age: Age, text: string, where: string): AgeRecipient {
  const t = text.trim();
  try {
    if (!t.startsWith('age1')) {
      if (/^age-secret-key-/i.test(t)) throw usageError('this is a secret key (AGE-SECRET-KEY-1…), not a recipient; give its public recipient (age1…), e.g. from `walship keygen` or `age-keygen -y`');
      if (/^ssh-/.test(t)) throw usageError('SSH keys are not supported; give an age X25519 recipient (age1…)');
      throw usageError('not an age X25519 recipient (expected age1…)');
    }
    return age.parseRecipient(t);
  } catch (err) {
    if (err instanceof WalshipError) throw usageError(`${where}: ${err.message.replace(/^age recipient /, 'recipient ')}`);
    throw err;
  }
}

/** An absolute path whose directory exists: a file name, not a pasted secret. */
function looksLikePath(path: string): boolean {
  if (!isAbsolute(path) || /\s/.test(path)) return false;
  try {
    return statSync(dirname(path)).isDirectory();
  } catch {
    return false;
  }
}

/** Read a key or passphrase file named by a setting; a secret one readable by group/others gets one warning. */
async function readSettingFile(key: SettingKey, path: string, secret: boolean): Promise<string> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : code ?? 'unreadable';
    // A secret pasted where a file name belongs must not come back in the message.
    if (secret && code === 'ENOENT' && !looksLikePath(path)) {
      throw usageError(`${setting(key)}: cannot read the file it names: no such file (the value is not shown, as it does not look like an absolute path and may be a secret pasted instead of a file name)`);
    }
    throw usageError(`${setting(key)}: cannot read ${path}: ${reason}`);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw usageError(`${setting(key)}: ${path} is not a regular file`);
    if (info.size > 1 << 20) throw usageError(`${setting(key)}: ${path} is larger than 1 MiB; not a key file`);
    if (secret && (info.mode & 0o077) !== 0) {
      log.warn(`${path} holds a secret but is accessible to group or others; run chmod 600 on it`, {
        setting: settings[key].env,
        mode: (info.mode & 0o777).toString(8).padStart(4, '0'),
      });
    }
    return await readFile(handle, 'utf8');
  } finally {
    await handle.close();
  }
}

/**
 * For a writer that finds its object already stored and must compare contents: an encrypted
 * stored object cannot be read on a host that has only recipients (by design). That is not a
 * corrupt object (exit 4) but an undecidable duplicate, so it is refused (exit 3) with what to do.
 * Use as `.catch(uncomparableEncrypted(name, location, encryption))` on the comparison.
 */
export function uncomparableEncrypted(name: string, location: string, encryption: Encryption | undefined): (err: unknown) => never {
  return (err: unknown) => {
    if (!encryption?.decrypt && err instanceof WalshipError && err.message.includes('object is encrypted;')) {
      throw refusedError(
        `${name} is already archived in ${location}, encrypted, and this host has no identity (WALSHIP_IDENTITY_FILE) to compare it with the local file; refusing, as the contents may differ. Compare them where the identity is (walship wal-push with WALSHIP_IDENTITY_FILE set exits 0 when they are identical)`,
      );
    }
    throw err;
  };
}
