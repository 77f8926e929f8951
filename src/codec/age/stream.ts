/**
 * The age STREAM payload: a 16-byte nonce, then ChaCha20-Poly1305 chunks of
 * 64 KiB plaintext under HKDF(file key, nonce, "payload"), each with the nonce
 * 11-byte big-endian counter || last-chunk flag. The last chunk may be full;
 * it may be empty only when the whole payload is empty.
 *
 * Both transforms keep at most one chunk of input (by reference where the
 * writes are large, so callers must not modify a buffer after writing it -
 * the usual stream contract; small writes are copied into one staging
 * buffer) plus that chunk's output, and make one cipher call per piece: no
 * per-byte JS and no concatenation on the hot path. A single huge write is
 * processed at once, so its output is buffered like its input was.
 */
import crypto from 'node:crypto';
import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { integrityError, usageError } from '../../errors.ts';
import { MAGIC, MAX_HEADER_BYTES, parseHeader, verifyHeaderMac } from './header.ts';
import type { ParsedHeader } from './header.ts';
import type { AgeIdentity, AgeRecipient } from './keys.ts';
import { CHUNK_SIZE, checkRecipients, chunkCipher, chunkNonce, NONCE_SIZE, payloadKey, startPayload, TAG_SIZE, ALGO } from './payload.ts';

const ENCRYPTED_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE;
/** Writes smaller than this are copied into the staging buffer instead of kept by reference. */
const COALESCE_BELOW = 4096;

/**
 * Cuts arbitrary writes into fixed-size chunks, always holding back the
 * latest complete chunk until it is known whether more data follows (only
 * then is it known whether it is the last). A chunk is handed over as a list
 * of pieces, valid only during the callback.
 */
class Rechunker {
  readonly #size: number;
  readonly #stage: Buffer;
  #stageUsed = 0;
  #pieces: Buffer[] = [];
  #length = 0;
  constructor(size: number) {
    this.#size = size;
    this.#stage = Buffer.allocUnsafe(size);
  }

  write(data: Buffer, emit: (pieces: Buffer[], length: number, last: boolean) => void): void {
    let off = 0;
    const n = data.length;
    while (off < n) {
      if (this.#length === this.#size) this.#emit(emit, false);
      const take = Math.min(this.#size - this.#length, n - off);
      this.#add(data, off, take);
      off += take;
    }
  }

  end(emit: (pieces: Buffer[], length: number, last: boolean) => void): void {
    this.#emit(emit, true);
  }

  #add(data: Buffer, off: number, take: number): void {
    this.#length += take;
    if (take >= COALESCE_BELOW) {
      this.#pieces.push(off === 0 && take === data.length ? data : data.subarray(off, off + take));
      return;
    }
    const start = this.#stageUsed;
    data.copy(this.#stage, start, off, off + take);
    this.#stageUsed += take;
    const last = this.#pieces[this.#pieces.length - 1];
    if (last !== undefined && last.buffer === this.#stage.buffer && last.byteOffset + last.length === this.#stage.byteOffset + start) {
      this.#pieces[this.#pieces.length - 1] = this.#stage.subarray(last.byteOffset - this.#stage.byteOffset, this.#stageUsed);
    } else {
      this.#pieces.push(this.#stage.subarray(start, this.#stageUsed));
    }
  }

  #emit(emit: (pieces: Buffer[], length: number, last: boolean) => void, last: boolean): void {
    const pieces = this.#pieces;
    const length = this.#length;
    this.#pieces = [];
    this.#length = 0;
    this.#stageUsed = 0;
    emit(pieces, length, last);
  }
}

// ---------------------------------------------------------------- encrypt

class EncryptStream extends Transform {
  readonly #recipients: readonly AgeRecipient[];
  readonly #chunks = new Rechunker(CHUNK_SIZE);
  readonly #nonce = Buffer.alloc(12);
  #key: crypto.KeyObject | null = null;
  #counter = 0;
  readonly #emitChunk = (pieces: Buffer[], _length: number, last: boolean): void => {
    const cipher = chunkCipher(this.#key as crypto.KeyObject, this.#nonce, this.#counter++, last);
    for (const p of pieces) this.push(cipher.update(p));
    cipher.final();
    this.push(cipher.getAuthTag());
  };

  constructor(recipients: readonly AgeRecipient[]) {
    super();
    checkRecipients(recipients);
    this.#recipients = [...recipients];
  }

  async #start(): Promise<void> {
    const { header, nonce, key } = await startPayload(this.#recipients);
    this.#key = key;
    this.push(header);
    this.push(nonce);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.#key === null) {
      this.#start().then(() => this._transform(chunk, _enc, cb), cb);
      return;
    }
    try {
      this.#chunks.write(chunk, this.#emitChunk);
    } catch (err) {
      cb(err as Error);
      return;
    }
    cb();
  }

  override _flush(cb: TransformCallback): void {
    if (this.#key === null) {
      this.#start().then(() => this._flush(cb), cb);
      return;
    }
    try {
      this.#chunks.end(this.#emitChunk);
    } catch (err) {
      cb(err as Error);
      return;
    }
    cb();
  }
}

// ---------------------------------------------------------------- decrypt

async function unwrapFileKey(header: ParsedHeader, identities: readonly AgeIdentity[]): Promise<Buffer> {
  const { stanzas } = header;
  const hasScrypt = stanzas.some((s) => s.type === 'scrypt');
  if (hasScrypt && stanzas.length !== 1) throw integrityError('age header is malformed: a scrypt stanza must be the only stanza');
  for (const id of identities) {
    if (hasScrypt && id.kind !== 'scrypt') continue;
    const fileKey = await id.unwrap(stanzas);
    if (fileKey !== null) return fileKey;
  }
  if (hasScrypt) {
    throw integrityError(
      identities.some((id) => id.kind === 'scrypt')
        ? 'age decryption failed: incorrect passphrase (or the object header is corrupt)'
        : 'object is encrypted to a passphrase, but no passphrase was given',
    );
  }
  throw integrityError('age decryption failed: no identity matches this object (wrong identity file, or the header is corrupt)');
}

const PHASE_HEADER = 0;
const PHASE_PAYLOAD = 1;

class DecryptStream extends Transform {
  readonly #identities: readonly AgeIdentity[];
  #phase = PHASE_HEADER;
  /** Header bytes accumulated so far (grows by doubling). */
  #head = Buffer.allocUnsafe(1024);
  #headLength = 0;
  #scanFrom = 0;
  #headerEnd = -1;
  readonly #chunks = new Rechunker(ENCRYPTED_CHUNK_SIZE);
  readonly #nonce = Buffer.alloc(12);
  readonly #tag = Buffer.alloc(TAG_SIZE);
  #key: crypto.KeyObject | null = null;
  #counter = 0;
  readonly #emitChunk = (pieces: Buffer[], length: number, last: boolean): void => this.#decryptChunk(pieces, length, last);

  constructor(identities: readonly AgeIdentity[]) {
    super();
    if (identities.length === 0) throw usageError('age decryption needs at least one identity or passphrase');
    this.#identities = [...identities];
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      if (this.#phase === PHASE_PAYLOAD) {
        this.#chunks.write(chunk, this.#emitChunk);
        cb();
        return;
      }
      if (!this.#appendHeader(chunk)) {
        cb();
        return;
      }
    } catch (err) {
      cb(err as Error);
      return;
    }
    this.#openHeader().then(() => {
      this.#phase = PHASE_PAYLOAD;
      const rest = this.#head.subarray(this.#headerEnd + NONCE_SIZE, this.#headLength);
      this.#head = Buffer.alloc(0);
      this.#chunks.write(rest, this.#emitChunk);
    }).then(() => cb(), cb);
  }

  override _flush(cb: TransformCallback): void {
    if (this.#phase === PHASE_HEADER) {
      cb(
        this.#headLength === 0
          ? integrityError('age decryption failed: the object is empty')
          : this.#headerEnd < 0
            ? integrityError('age decryption failed: the object is truncated inside its header')
            : integrityError('age decryption failed: the object is truncated (payload missing)'),
      );
      return;
    }
    try {
      this.#chunks.end(this.#emitChunk);
    } catch (err) {
      cb(err as Error);
      return;
    }
    cb();
  }

  /** Accumulates header bytes; true once the header and the payload nonce are complete. */
  #appendHeader(chunk: Buffer): boolean {
    const need = this.#headLength + chunk.length;
    if (need > this.#head.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.#head.length * 2));
      this.#head.copy(grown, 0, 0, this.#headLength);
      this.#head = grown;
    }
    chunk.copy(this.#head, this.#headLength);
    this.#headLength = need;
    const head = this.#head.subarray(0, this.#headLength);
    // Fail fast on anything that is not age, without reading a megabyte of it.
    const prefix = Math.min(head.length, MAGIC.length);
    if (!head.subarray(0, prefix).equals(MAGIC.subarray(0, prefix))) {
      throw integrityError(
        head.subarray(0, prefix).toString('latin1').startsWith('-----BEGIN')
          ? 'age decryption failed: ASCII-armored age objects are not supported'
          : 'age decryption failed: not an age-encrypted object (bad header)',
      );
    }
    if (this.#headerEnd < 0) {
      const mac = head.indexOf('\n---', Math.max(0, this.#scanFrom - 3), 'latin1');
      if (mac < 0) {
        this.#scanFrom = head.length;
      } else {
        this.#scanFrom = mac;
        const nl = head.indexOf(0x0a, mac + 1);
        if (nl >= 0) this.#headerEnd = nl + 1;
      }
      if (this.#headerEnd < 0 && head.length > MAX_HEADER_BYTES) {
        throw integrityError('age decryption failed: header is larger than 1 MiB; not a valid object');
      }
    }
    return this.#headerEnd >= 0 && head.length >= this.#headerEnd + NONCE_SIZE;
  }

  async #openHeader(): Promise<void> {
    const header = parseHeader(Buffer.from(this.#head.subarray(0, this.#headerEnd)));
    const fileKey = await unwrapFileKey(header, this.#identities);
    try {
      if (!verifyHeaderMac(header, fileKey)) {
        throw integrityError('age decryption failed: header MAC mismatch (the header is corrupt or was tampered with)');
      }
      const nonce = this.#head.subarray(this.#headerEnd, this.#headerEnd + NONCE_SIZE);
      this.#key = payloadKey(fileKey, nonce);
    } finally {
      fileKey.fill(0);
    }
  }

  #decryptChunk(pieces: Buffer[], length: number, last: boolean): void {
    const index = this.#counter;
    if (length < TAG_SIZE) {
      throw integrityError(
        length === 0 && index === 0
          ? 'age decryption failed: the object is truncated (no payload chunks)'
          : `age decryption failed: the object is truncated (chunk ${index} is incomplete)`,
      );
    }
    if (last && length === TAG_SIZE && index > 0) {
      throw integrityError(`age decryption failed: the final chunk ${index} is empty, which age forbids (corrupt object)`);
    }
    // Split off the tag (the last 16 bytes, possibly spread over pieces).
    const ctLength = length - TAG_SIZE;
    let tagFilled = TAG_SIZE;
    for (let i = pieces.length - 1; tagFilled > 0; i--) {
      const p = pieces[i] as Buffer;
      const n = Math.min(tagFilled, p.length);
      p.copy(this.#tag, tagFilled - n, p.length - n);
      tagFilled -= n;
    }
    const out = this.#open(pieces, ctLength, last);
    if (out === null) {
      let why = `chunk ${index} failed to authenticate (corrupt, reordered or tampered object)`;
      if (last && length === ENCRYPTED_CHUNK_SIZE && this.#open(pieces, ctLength, false) !== null) {
        why = `the object is truncated after chunk ${index}`;
      } else if (!last && this.#open(pieces, ctLength, true) !== null) {
        why = `unexpected data after the final chunk ${index}`;
      }
      throw integrityError(`age decryption failed: ${why}`);
    }
    this.#counter++;
    for (const o of out) if (o.length > 0) this.push(o);
  }

  /** Decrypts the first ctLength bytes of the pieces against this.#tag; null if it does not authenticate. */
  #open(pieces: Buffer[], ctLength: number, last: boolean): Buffer[] | null {
    const decipher = crypto.createDecipheriv(ALGO, this.#key as crypto.KeyObject, chunkNonce(this.#nonce, this.#counter, last), {
      authTagLength: TAG_SIZE,
    });
    decipher.setAuthTag(this.#tag);
    const out: Buffer[] = [];
    let left = ctLength;
    for (let i = 0; left > 0; i++) {
      const p = pieces[i] as Buffer;
      const take = Math.min(left, p.length);
      out.push(decipher.update(take === p.length ? p : p.subarray(0, take)));
      left -= take;
    }
    try {
      decipher.final();
    } catch {
      for (const o of out) o.fill(0);
      return null;
    }
    return out;
  }
}

// ---------------------------------------------------------------- public API

/** A Transform from plaintext to an age v1 object for the given recipients. */
export function createEncryptStream(recipients: readonly AgeRecipient[]): Transform {
  return new EncryptStream(recipients);
}

/**
 * A Transform from an age v1 object to its plaintext. Each chunk's plaintext
 * is emitted only after it authenticates; truncation, trailing data and any
 * tampering end the stream with an integrity error (exit 4).
 */
export function createDecryptStream(identities: readonly AgeIdentity[]): Transform {
  return new DecryptStream(identities);
}

export function isAgeEncrypted(firstBytes: Uint8Array): boolean {
  return firstBytes.length >= MAGIC.length && MAGIC.equals(firstBytes.subarray(0, MAGIC.length));
}
