import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { inspect } from 'node:util';
import fc from 'fast-check';
import { ExitCode, WalshipError } from '../../src/errors.ts';
import {
  CHUNK_SIZE,
  createDecryptStream,
  createEncryptStream,
  decryptBuffer,
  encryptBuffer,
  encryptWhole,
  generateIdentity,
  identityFingerprint,
  isAgeEncrypted,
  parseIdentity,
  parseIdentityFile,
  parseRecipient,
  parseRecipientsFile,
  recipientFingerprint,
  scryptIdentity,
  scryptRecipient,
} from '../../src/codec/age/index.ts';
import type { AgeIdentity, AgeRecipient } from '../../src/codec/age/index.ts';
import { parseHeader, serializeHeader, serializeStanza } from '../../src/codec/age/header.ts';
import type { Stanza } from '../../src/codec/age/header.ts';
import { LOW_ORDER_POINTS } from '../../src/codec/age/keys.ts';
import { bech32 } from '@scure/base';

// ------------------------------------------------------------------ helpers

const keyA = generateIdentity();
const keyB = generateIdentity();
const keyC = generateIdentity();
const idA = parseIdentity(keyA.identity);
const idB = parseIdentity(keyB.identity);
const idC = parseIdentity(keyC.identity);
const recA = parseRecipient(keyA.recipient);
const recB = parseRecipient(keyB.recipient);
const PASSPHRASE = 'tr0ub4dor & 3 correct horse';

/** Every secret these tests use; no error message may contain any of them. */
const SECRETS = [keyA.identity, keyB.identity, keyC.identity, PASSPHRASE, 'vector passphrase'];
const seenMessages: string[] = [];

/** Runs `input` (as the given writes) through `transform`; returns output and error. */
async function run(transform: NodeJS.ReadWriteStream, writes: Buffer[]): Promise<{ out: Buffer; err: unknown }> {
  const out: Buffer[] = [];
  let err: unknown = null;
  try {
    await pipeline(
      Readable.from(writes, { objectMode: false }),
      transform,
      new Writable({
        write(chunk: Buffer, _e, cb) {
          out.push(chunk);
          cb();
        },
      }),
    );
  } catch (e) {
    err = e;
  }
  return { out: Buffer.concat(out), err };
}

/** Splits `data` into writes of the given sizes (cycled). */
function split(data: Buffer, sizes: number[]): Buffer[] {
  const parts: Buffer[] = [];
  let off = 0;
  for (let i = 0; off < data.length; i++) {
    const n = Math.max(1, sizes[i % sizes.length] as number);
    parts.push(data.subarray(off, off + n));
    off += n;
  }
  return parts;
}

function assertWalshipError(err: unknown, exitCode: number, pattern?: RegExp): WalshipError {
  assert.ok(err instanceof WalshipError, `expected a WalshipError, got ${inspect(err)}`);
  assert.equal(err.exitCode, exitCode, err.message);
  if (pattern) assert.match(err.message, pattern);
  assert.ok(!err.message.includes('\n'), 'error messages are one line');
  seenMessages.push(err.message);
  return err;
}

async function expectIntegrity(data: Buffer, ids: AgeIdentity[], pattern?: RegExp, writes?: number[]): Promise<Buffer> {
  const { out, err } = await run(createDecryptStream(ids), writes ? split(data, writes) : [data]);
  assertWalshipError(err, ExitCode.integrity, pattern);
  return out;
}

function expectUsage(fn: () => unknown, pattern?: RegExp): void {
  let caught: unknown = null;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assertWalshipError(caught, ExitCode.usage, pattern);
}

function random(n: number): Buffer {
  return crypto.randomBytes(n);
}

/** Offsets of the payload inside an age object: header end, and the start of chunk i. */
function layout(obj: Buffer): { headerEnd: number; chunkStart: (i: number) => number } {
  const mac = obj.indexOf('\n---');
  const headerEnd = obj.indexOf(0x0a, mac + 1) + 1;
  return { headerEnd, chunkStart: (i) => headerEnd + 16 + i * (CHUNK_SIZE + 16) };
}

// An independent STREAM writer, for crafting objects the encrypter never makes.
function hkdf(ikm: Buffer, salt: Buffer, info: string): Buffer {
  return Buffer.from(crypto.hkdfSync('sha256', ikm, salt, info, 32));
}
function sealChunk(key: Buffer, counter: number, last: boolean, plain: Buffer): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeUInt32BE(counter, 7);
  nonce[11] = last ? 1 : 0;
  const c = crypto.createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}
function craft(stanzas: Stanza[], fileKey: Buffer, chunks: { plain: Buffer; last: boolean }[]): Buffer {
  const nonce = random(16);
  const key = hkdf(fileKey, nonce, 'payload');
  return Buffer.concat([serializeHeader(stanzas, fileKey), nonce, ...chunks.map((c, i) => sealChunk(key, i, c.last, c.plain))]);
}
function x25519Stanzas(r: AgeRecipient, fileKey: Buffer): Stanza[] {
  assert.equal(r.kind, 'x25519');
  return r.wrapFileKey(fileKey) as Stanza[];
}

// ------------------------------------------------------------------ round trips

describe('age round trip', () => {
  const sizes = [0, 1, 15, 16, 17, 65535, 65536, 65537, 2 * 65536, 3 * 65536 + 7, 5 * 1024 * 1024 + 3];
  for (const size of sizes) {
    it(`decrypt(encrypt(x)) == x for ${size} bytes, and the size is as the spec says`, async () => {
      const plain = random(size);
      const enc = await encryptBuffer(plain, [recA]);
      assert.ok(isAgeEncrypted(enc));
      const chunks = Math.max(1, Math.ceil(size / CHUNK_SIZE));
      assert.equal(enc.length, layout(enc).headerEnd + 16 + size + 16 * chunks);
      assert.deepEqual(await decryptBuffer(enc, [idA]), plain);
    });
  }

  it('holds for random sizes and random write chunking on both sides', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 4 * CHUNK_SIZE + 100 }),
        fc.array(fc.integer({ min: 1, max: 150_000 }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 150_000 }), { minLength: 1, maxLength: 8 }),
        async (size, encWrites, decWrites) => {
          const plain = random(size);
          const enc = await run(createEncryptStream([recA, recB]), split(plain, encWrites));
          assert.equal(enc.err, null);
          const dec = await run(createDecryptStream([idB]), split(enc.out, decWrites));
          assert.equal(dec.err, null);
          assert.ok(dec.out.equals(plain));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('the whole-buffer encryptor (wal-push) and the stream make the same layout, and both decrypt', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.integer({ min: 0, max: 3 * CHUNK_SIZE + 5 }), fc.constantFrom(0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE)), async (size) => {
        const plain = random(size);
        const whole = await encryptWhole(plain, [recA]);
        const streamed = await run(createEncryptStream([recA]), [plain]);
        assert.equal(streamed.err, null);
        assert.equal(whole.length, streamed.out.length);
        assert.equal(layout(whole).headerEnd, layout(streamed.out).headerEnd);
        assert.ok((await run(createDecryptStream([idA]), [whole])).out.equals(plain));
      }),
      { numRuns: 40 },
    );
  });

  it('handles 1-byte writes and sizes around chunk boundaries', async () => {
    for (const size of [CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1]) {
      const plain = random(size);
      const enc = await run(createEncryptStream([recA]), split(plain, [1]));
      assert.equal(enc.err, null);
      const dec = await run(createDecryptStream([idA]), split(enc.out, [1, 7, 3]));
      assert.equal(dec.err, null);
      assert.ok(dec.out.equals(plain));
    }
  });

  it('handles one huge write', async () => {
    const plain = random(9 * CHUNK_SIZE + 12345);
    const enc = await run(createEncryptStream([recA]), [plain]);
    const dec = await run(createDecryptStream([idA]), [enc.out]);
    assert.equal(dec.err, null);
    assert.ok(dec.out.equals(plain));
  });

  it('each recipient of a multi-recipient object can decrypt it', async () => {
    const plain = random(100_000);
    const enc = await encryptBuffer(plain, [recA, recB]);
    assert.deepEqual(await decryptBuffer(enc, [idA]), plain);
    assert.deepEqual(await decryptBuffer(enc, [idB]), plain);
    assert.deepEqual(await decryptBuffer(enc, [idC, idB]), plain);
  });

  it('a fresh file key and nonce per object', async () => {
    const plain = Buffer.from('same input');
    const a = await encryptBuffer(plain, [recA]);
    const b = await encryptBuffer(plain, [recA]);
    assert.notDeepEqual(a, b);
  });
});

// ------------------------------------------------------------------ test vectors

describe('age test vectors from the age CLI (age 1.1.1)', () => {
  const identity = 'AGE-SECRET-KEY-1672XWSNNFXV7VE0DXUMY9GLN7SJFAV8MTQFSGPP4ESP8S9VGJT9QNWL7HP';
  SECRETS.push(identity);
  const expected = Buffer.from('walship age test vector\n');

  it('decrypts an X25519 object made by `age -r`', async () => {
    const obj = Buffer.from(
      'YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSBCOHFTTUd0dVhQVUw1YldRUENLbjdFWjVPQ01LY0VyNklhV3NQU1VmM2tNCk5XVkhYb01MdzR4OWt1WmFLZk53ditaWHdWeWJ1R1EzZGdyVjhqSUFMQ0kKLS0tIE9xNnlIMDZVWHA3MTNUdHU1T0ZBcXVBTFF6QlJPZE05OGZnZDdIVzh6RmsKes6KalcnFHx6KwriOuy3ihZclaoW1yPqKSSWuvfgJng3NztuEjsOMZqcMaE4YK4XQ/N6qhd5bNk=',
      'base64',
    );
    const ids = parseIdentityFile(
      `# created: 2026-11-27T14:14:39Z\n# public key: age19kkygfvlr0qx49jhshjrxmqmz4e758cwgy0uztkkx8wmgt8qa4aqjx5ezt\n${identity}\n`,
      'vec-key.txt',
    );
    assert.equal(identityFingerprint(ids[0] as AgeIdentity), recipientFingerprint(parseRecipient('age19kkygfvlr0qx49jhshjrxmqmz4e758cwgy0uztkkx8wmgt8qa4aqjx5ezt')));
    assert.deepEqual(await decryptBuffer(obj, ids), expected);
    await expectIntegrity(obj, [idA], /no identity matches/);
  });

  it('decrypts a scrypt object made by `age -p` (work factor 18)', async () => {
    const obj = Buffer.from(
      'YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IHNjcnlwdCBoSFdLWk1xNmZScW1QNWVZV0hhLzlBIDE4CnRwdlZYM0xReGNVSWRpTEtsK1plbTVyclMrNE96MkEyRjBQVlcvOGNzM3cKLS0tIDAvVHRlSHF2MU5QSmxwQ2l4MU1rLzdlMm83QldXaGZOWXBOWkVlNnpnT0kKyEzPOlk6ARoijgcKSEXL9MgkyZCqWW8MW6fY/DztwSH2ameFzbxUrIfQHYyKxL3XlyDJslKp6ww=',
      'base64',
    );
    assert.deepEqual(await decryptBuffer(obj, [scryptIdentity('vector passphrase')]), expected);
    await expectIntegrity(obj, [scryptIdentity(PASSPHRASE)], /incorrect passphrase/);
    await expectIntegrity(obj, [idA], /no passphrase was given/);
  });
});

// ------------------------------------------------------------------ keys

describe('age keys', () => {
  it('generateIdentity returns matching strings', () => {
    const k = generateIdentity();
    assert.match(k.identity, /^AGE-SECRET-KEY-1[0-9A-Z]{58}$/);
    assert.match(k.recipient, /^age1[0-9a-z]{58}$/);
    assert.equal(parseIdentity(k.identity).recipient().toString(), k.recipient);
    assert.equal(parseRecipient(k.recipient).toString(), k.recipient);
  });

  it('fingerprints are short, public and stable', () => {
    const fp = recipientFingerprint(recA);
    assert.match(fp, /^[0-9a-f]{16}$/);
    assert.equal(fp, crypto.createHash('sha256').update(keyA.recipient).digest('hex').slice(0, 16));
    assert.equal(identityFingerprint(idA), fp);
    assert.notEqual(recipientFingerprint(recB), fp);
    assert.equal(recipientFingerprint(scryptRecipient(PASSPHRASE, 10)), 'scrypt');
    assert.equal(identityFingerprint(scryptIdentity(PASSPHRASE)), null);
  });

  it('parses identity files with comments, blank lines and several identities', async () => {
    const text = `# created: now\n# public key: ${keyA.recipient}\n${keyA.identity}\n\n  # another\r\n${keyB.identity}\r\n\n`;
    const ids = parseIdentityFile(text, '/etc/walship/key.txt');
    assert.equal(ids.length, 2);
    const enc = await encryptBuffer(Buffer.from('x'), [recB]);
    assert.deepEqual(await decryptBuffer(enc, ids), Buffer.from('x'));
  });

  it('rejects bad identity files with a usage error that names the line, not the key', () => {
    const corrupt = `${keyA.identity.slice(0, -1)}${keyA.identity.endsWith('Q') ? 'P' : 'Q'}`;
    SECRETS.push(corrupt);
    expectUsage(() => parseIdentityFile(`# ok\n${corrupt}\n`, 'key.txt'), /key\.txt line 2 .*malformed/);
    expectUsage(() => parseIdentityFile('# nothing\n\n', 'key.txt'), /no identities/);
    expectUsage(() => parseIdentityFile(`${keyA.identity.toLowerCase()}\n`, 'key.txt'), /not an age identity/);
    expectUsage(() => parseIdentityFile(`${keyA.recipient}\n`, 'key.txt'), /not an age identity/);
    expectUsage(() => parseIdentityFile('AGE-SECRET-KEY-PQ-1ABCDEF\n', 'key.txt'), /does not support/);
    expectUsage(() => parseIdentityFile('age-encryption.org/v1\n-> scrypt', 'key.txt'), /encrypted/);
    expectUsage(() => parseIdentity(keyA.identity.slice(0, 40)), /malformed/);
  });

  it('parses recipients files', () => {
    const rs = parseRecipientsFile(`# ops\n${keyA.recipient}\n\n# escrow\n  ${keyB.recipient}  \n`);
    assert.deepEqual(
      rs.map((r) => r.toString()),
      [keyA.recipient, keyB.recipient],
    );
    expectUsage(() => parseRecipientsFile('# none\n'), /no recipients/);
    expectUsage(() => parseRecipientsFile(`${keyA.recipient}\nage1nope\n`, 'recips.txt'), /recips\.txt line 2/);
  });

  it('malformed recipient strings are usage errors (exit 2)', () => {
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'q' ? 'p' : 'q') + s.slice(i + 1);
    const bad = [
      '',
      'age1',
      'age',
      'hello world',
      flip(keyA.recipient, 10), // checksum
      flip(keyA.recipient, keyA.recipient.length - 1),
      keyA.recipient.slice(0, -1),
      keyA.recipient.toUpperCase(),
      keyA.recipient.slice(0, 8) + keyA.recipient.slice(8).toUpperCase(),
      `${keyA.recipient}q`,
      'age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq',
      'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN',
      'age1pq1qqqqqqqqqqqqqqqqqqqq',
      'age1yubikey1qqqqqqqqqqqqq',
    ];
    for (const text of bad) expectUsage(() => parseRecipient(text));
    // Well-formed, but the all-zero (low-order) point.
    expectUsage(() => parseRecipient('age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq5cu47z'), /not a usable X25519 public key/);
  });

  it('every point in the low-order table is refused, and really gives an all-zero key exchange (top bit set or not)', () => {
    const { privateKey } = crypto.generateKeyPairSync('x25519');
    const spki = Buffer.from('302a300506032b656e032100', 'hex');
    for (const point of LOW_ORDER_POINTS) {
      for (const topBit of [0, 0x80]) {
        const raw = Buffer.from(point);
        raw[31]! |= topBit;
        const hex = raw.toString('hex');
        expectUsage(() => parseRecipient(bech32.encode('age', bech32.toWords(raw), false)), /not a usable X25519 public key/);
        // OpenSSL refuses an all-zero shared secret; anything else would mean the table is wrong.
        let shared: Buffer | undefined;
        try {
          shared = crypto.diffieHellman({ privateKey, publicKey: crypto.createPublicKey({ key: Buffer.concat([spki, raw]), format: 'der', type: 'spki' }) });
        } catch {
          shared = undefined;
        }
        assert.ok(shared === undefined || shared.every((b) => b === 0), `${hex} is not of low order`);
      }
    }
    // An ordinary key is accepted.
    assert.equal(parseRecipient(generateIdentity().recipient).kind, 'x25519');
  });

  it('a secret key given as a recipient is refused without echoing it', () => {
    expectUsage(() => parseRecipient(keyC.identity), /secret key/);
    expectUsage(() => parseRecipient(`  ${keyC.identity.toLowerCase()}`), /secret key/);
    expectUsage(() => parseRecipientsFile(`${keyC.identity}\n`), /secret key/);
  });

  it('keys never show up in inspect or JSON output', () => {
    const everything = [idA, idB, scryptIdentity(PASSPHRASE), scryptRecipient(PASSPHRASE, 12), recA];
    for (const o of everything) {
      const shown = `${inspect(o, { showHidden: true, depth: 5 })} ${JSON.stringify(o)} ${String(o)}`;
      for (const s of SECRETS) assert.ok(!shown.includes(s), `leaked via ${shown}`);
      assert.ok(!shown.includes(PASSPHRASE));
    }
  });

  it('isAgeEncrypted sniffs the version line', () => {
    assert.equal(isAgeEncrypted(Buffer.from('age-encryption.org/v1\n-> X25519')), true);
    assert.equal(isAgeEncrypted(Buffer.from('age-encryption.org/v1')), false);
    assert.equal(isAgeEncrypted(Buffer.from('age-encryption.org/v2\n')), false);
    assert.equal(isAgeEncrypted(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])), false);
    assert.equal(isAgeEncrypted(Buffer.alloc(0)), false);
  });

  it('encryption settings are validated up front', () => {
    expectUsage(() => createEncryptStream([]), /at least one recipient/);
    expectUsage(() => createDecryptStream([]), /at least one identity/);
    expectUsage(() => createEncryptStream([scryptRecipient(PASSPHRASE, 10), recA]), /only recipient/);
    expectUsage(() => scryptRecipient(''), /empty/);
    expectUsage(() => scryptIdentity(''), /empty/);
    expectUsage(() => scryptRecipient(PASSPHRASE, 30), /work factor/);
    expectUsage(() => scryptRecipient(PASSPHRASE, 9), /work factor/);
    expectUsage(() => scryptRecipient(PASSPHRASE, 18.5), /work factor/);
    assert.equal(scryptRecipient(PASSPHRASE).workFactor, 18);
  });
});

// ------------------------------------------------------------------ header format

describe('age header', () => {
  it('wraps stanza bodies at 64 columns, ending with a short (maybe empty) line', () => {
    const s48 = serializeStanza({ type: 'x', args: ['a'], body: Buffer.alloc(48) });
    assert.equal(s48, `-> x a\n${'A'.repeat(64)}\n\n`);
    const s0 = serializeStanza({ type: 'x', args: [], body: Buffer.alloc(0) });
    assert.equal(s0, '-> x\n\n');
    const s50 = serializeStanza({ type: 'x', args: [], body: Buffer.alloc(50) });
    assert.equal(s50, `-> x\n${'A'.repeat(64)}\nAAA\n`);
    const fileKey = random(16);
    const header = serializeHeader(
      [
        { type: 'grease-1', args: ['a', 'b'], body: random(48) },
        { type: 'x', args: [], body: Buffer.alloc(0) },
      ],
      fileKey,
    );
    const parsed = parseHeader(header);
    assert.equal(parsed.stanzas.length, 2);
    assert.equal(parsed.stanzas[0]?.body.length, 48);
    assert.deepEqual(parsed.stanzas[0]?.args, ['a', 'b']);
  });

  it('ignores unknown stanzas but authenticates them', async () => {
    const fileKey = random(16);
    const plain = random(1000);
    const stanzas = [{ type: 'walship-grease', args: ['x'], body: random(70) }, ...x25519Stanzas(recA, fileKey)];
    const obj = craft(stanzas, fileKey, [{ plain, last: true }]);
    assert.deepEqual(await decryptBuffer(obj, [idA]), plain);
    const i = obj.indexOf('walship-grease') + 2;
    const bad = Buffer.from(obj);
    bad[i] = 0x4c; // 'l' -> 'L'
    await expectIntegrity(bad, [idA], /MAC mismatch/);
  });

  const malformed: [string, string][] = [
    ['no stanzas end', 'age-encryption.org/v1\n-> X25519 abc\n'],
    ['body line too long', `age-encryption.org/v1\n-> x\n${'A'.repeat(65)}\n--- ${'A'.repeat(43)}\n`],
    ['body without short last line', `age-encryption.org/v1\n-> x\n${'A'.repeat(64)}\n--- ${'A'.repeat(43)}\n`],
    ['double space', `age-encryption.org/v1\n-> x  a\n\n--- ${'A'.repeat(43)}\n`],
    ['empty stanza', `age-encryption.org/v1\n-> \n\n--- ${'A'.repeat(43)}\n`],
    ['padding in body', `age-encryption.org/v1\n-> x\nAA==\n--- ${'A'.repeat(43)}\n`],
    ['non-canonical body', `age-encryption.org/v1\n-> x\nAB\n--- ${'A'.repeat(43)}\n`],
    ['garbage line', `age-encryption.org/v1\nhello\n--- ${'A'.repeat(43)}\n`],
    ['short MAC', `age-encryption.org/v1\n-> x\n\n--- ${'A'.repeat(42)}\n`],
    ['MAC without space', `age-encryption.org/v1\n-> x\n\n---${'A'.repeat(43)}\n`],
    ['CRLF', `age-encryption.org/v1\r\n-> x\r\n\r\n--- ${'A'.repeat(43)}\r\n`],
  ];
  for (const [what, text] of malformed) {
    it(`rejects a malformed header: ${what}`, async () => {
      await expectIntegrity(Buffer.concat([Buffer.from(text), random(40)]), [idA]);
    });
  }

  it('rejects non-age input quickly, without buffering it', async () => {
    await expectIntegrity(random(5 * 1024 * 1024), [idA], /not an age-encrypted object/);
    await expectIntegrity(Buffer.from('-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n'), [idA], /armored/);
    await expectIntegrity(Buffer.alloc(0), [idA], /empty/);
    await expectIntegrity(Buffer.from('age-encryption.org/v1\n-> X25519 '), [idA], /truncated inside its header/);
    const endless = Buffer.concat([Buffer.from('age-encryption.org/v1\n-> x\n'), Buffer.alloc(2 * 1024 * 1024, 0x41)]);
    await expectIntegrity(endless, [idA], /larger than 1 MiB/, [4096]);
  });

  it('rejects malformed X25519 stanzas', async () => {
    const fileKey = random(16);
    const good = x25519Stanzas(recA, fileKey)[0] as Stanza;
    const variants: Stanza[] = [
      { ...good, args: [] },
      { ...good, args: [...good.args, 'extra'] },
      { ...good, args: ['AAAA'] },
      { ...good, body: good.body.subarray(0, 31) },
      { ...good, args: [Buffer.alloc(32).toString('base64').replace(/=+$/, '')] }, // low-order share
    ];
    for (const s of variants) {
      await expectIntegrity(craft([s], fileKey, [{ plain: Buffer.from('x'), last: true }]), [idA], /malformed/);
    }
  });
});

// ------------------------------------------------------------------ tampering

describe('age integrity', () => {
  const plain = random(3 * CHUNK_SIZE + 1000); // chunks 0, 1, 2 full; chunk 3 short
  let obj: Buffer;
  const ready = encryptBuffer(plain, [recA, recB]).then((o) => {
    obj = o;
  });

  it('a wrong identity is an integrity error (exit 4)', async () => {
    await ready;
    await expectIntegrity(obj, [idC], /no identity matches/);
  });

  it('one flipped bit in the header, nonce, first, middle or last chunk is an integrity error', async () => {
    await ready;
    const { headerEnd, chunkStart } = layout(obj);
    const spots: [string, number][] = [
      ['version line', 3],
      ['stanza type', obj.indexOf('X25519') + 1],
      ['stanza argument', obj.indexOf('X25519') + 10],
      ['stanza body', obj.indexOf('\n', obj.indexOf('X25519')) + 5],
      ['second stanza', obj.lastIndexOf('X25519') + 12],
      ['MAC', headerEnd - 10],
      ['payload nonce', headerEnd + 3],
      ['first chunk', chunkStart(0) + 100],
      ['first chunk tag', chunkStart(1) - 1],
      ['middle chunk', chunkStart(1) + 40000],
      ['last full chunk', chunkStart(2) + 5],
      ['last chunk', chunkStart(3) + 500],
      ['last chunk tag', obj.length - 1],
    ];
    for (const [where, at] of spots) {
      const bad = Buffer.from(obj);
      bad[at] = (bad[at] as number) ^ 0x04;
      const out = await expectIntegrity(bad, [idA]);
      // Whatever was emitted is authenticated plaintext: a whole-chunk prefix.
      assert.equal(out.length % CHUNK_SIZE, 0, where);
      assert.ok(out.equals(plain.subarray(0, out.length)), where);
    }
  });

  it('any single flipped bit anywhere is detected (property)', async () => {
    await ready;
    const small = await encryptBuffer(random(2 * CHUNK_SIZE + 10), [recA]);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: small.length * 8 - 1 }), async (bit) => {
        const bad = Buffer.from(small);
        bad[bit >> 3] = (bad[bit >> 3] as number) ^ (1 << (bit & 7));
        await expectIntegrity(bad, [idA]);
      }),
      { numRuns: 150 },
    );
  });

  it('truncation at any of several offsets is an integrity error', async () => {
    await ready;
    const { headerEnd, chunkStart } = layout(obj);
    const cuts = [
      1,
      10,
      headerEnd - 1,
      headerEnd,
      headerEnd + 8,
      headerEnd + 16,
      chunkStart(0) + 10,
      chunkStart(0) + 16,
      chunkStart(1) - 1,
      chunkStart(1),
      chunkStart(1) + 1,
      chunkStart(2) + 16,
      chunkStart(3),
      chunkStart(3) + 16,
      obj.length - 17,
      obj.length - 16,
      obj.length - 1,
    ];
    for (const cut of cuts) {
      const out = await expectIntegrity(obj.subarray(0, cut), [idA]);
      assert.ok(out.equals(plain.subarray(0, out.length)), `cut at ${cut}`);
      assert.ok(out.length < plain.length);
    }
    await expectIntegrity(obj.subarray(0, chunkStart(1)), [idA], /truncated after chunk 0/);
  });

  it('a truncated object that ends on a chunk boundary is caught even with 1-byte writes', async () => {
    await ready;
    const { chunkStart } = layout(obj);
    await expectIntegrity(obj.subarray(0, chunkStart(2)), [idA], /truncated/, [1, 3000, 70000]);
  });

  it('trailing data after the final chunk is an integrity error', async () => {
    await ready;
    await expectIntegrity(Buffer.concat([obj, Buffer.from([0])]), [idA], /chunk 3/);
    const fullLast = await encryptBuffer(random(2 * CHUNK_SIZE), [recA]);
    await expectIntegrity(Buffer.concat([fullLast, Buffer.from([0])]), [idA], /unexpected data after the final chunk 1/);
    await expectIntegrity(Buffer.concat([obj, random(100_000)]), [idA]);
    await expectIntegrity(Buffer.concat([obj, obj]), [idA]);
  });

  it('reordered, dropped or duplicated chunks are integrity errors', async () => {
    await ready;
    const { chunkStart } = layout(obj);
    const head = obj.subarray(0, chunkStart(0));
    const c = [0, 1, 2, 3].map((i) => obj.subarray(chunkStart(i), i === 3 ? obj.length : chunkStart(i + 1)));
    const [c0, c1, c2, c3] = c as [Buffer, Buffer, Buffer, Buffer];
    await expectIntegrity(Buffer.concat([head, c1, c0, c2, c3]), [idA], /chunk 0/);
    await expectIntegrity(Buffer.concat([head, c0, c2, c1, c3]), [idA], /chunk 1/);
    await expectIntegrity(Buffer.concat([head, c0, c2, c3]), [idA]);
    await expectIntegrity(Buffer.concat([head, c0, c1, c1, c2, c3]), [idA]);
    await expectIntegrity(Buffer.concat([head, c0, c1, c2]), [idA], /truncated/);
  });

  it('chunks of another object (same key, other nonce) are rejected', async () => {
    const fileKey = random(16);
    const stanzas = x25519Stanzas(recA, fileKey);
    const p = random(2 * CHUNK_SIZE);
    const a = craft(stanzas, fileKey, [{ plain: p.subarray(0, CHUNK_SIZE), last: false }, { plain: p.subarray(CHUNK_SIZE), last: true }]);
    const b = craft(stanzas, fileKey, [{ plain: p.subarray(0, CHUNK_SIZE), last: false }, { plain: p.subarray(CHUNK_SIZE), last: true }]);
    assert.deepEqual(await decryptBuffer(a, [idA]), p);
    const { chunkStart } = layout(a);
    await expectIntegrity(Buffer.concat([a.subarray(0, chunkStart(1)), b.subarray(chunkStart(1))]), [idA]);
  });

  it('follows the spec on the last chunk: full is fine, empty only for an empty payload', async () => {
    const fileKey = random(16);
    const stanzas = x25519Stanzas(recA, fileKey);
    const full = random(CHUNK_SIZE);
    assert.deepEqual(await decryptBuffer(craft(stanzas, fileKey, [{ plain: full, last: true }]), [idA]), full);
    assert.deepEqual(await decryptBuffer(craft(stanzas, fileKey, [{ plain: Buffer.alloc(0), last: true }]), [idA]), Buffer.alloc(0));
    const emptyLast = craft(stanzas, fileKey, [
      { plain: full, last: false },
      { plain: Buffer.alloc(0), last: true },
    ]);
    const out = await expectIntegrity(emptyLast, [idA], /final chunk 1 is empty/);
    assert.equal(out.length, CHUNK_SIZE);
    // A short chunk that is not flagged last, at the end.
    await expectIntegrity(craft(stanzas, fileKey, [{ plain: random(10), last: false }]), [idA]);
    // No chunks at all after the nonce.
    await expectIntegrity(craft(stanzas, fileKey, []), [idA], /no payload chunks/);
    // Header without a nonce.
    await expectIntegrity(craft(stanzas, fileKey, []).subarray(0, -16), [idA], /payload missing/);
  });

  it('does not emit a chunk before it authenticates and is known not to be the end', async () => {
    await ready;
    const { chunkStart } = layout(obj);
    const dec = createDecryptStream([idA]);
    const got: Buffer[] = [];
    dec.on('data', (b: Buffer) => got.push(b));
    const errored = new Promise((resolve) => dec.on('error', resolve));
    dec.write(obj.subarray(0, chunkStart(1)));
    await new Promise((r) => setImmediate(r));
    assert.equal(Buffer.concat(got).length, 0, 'chunk 0 is held until more data arrives');
    dec.write(obj.subarray(chunkStart(1), chunkStart(1) + 1));
    await new Promise((r) => setImmediate(r));
    assert.ok(Buffer.concat(got).equals(plain.subarray(0, CHUNK_SIZE)));
    const bad = Buffer.from(obj.subarray(chunkStart(1) + 1, chunkStart(2)));
    bad[bad.length - 1] = (bad[bad.length - 1] as number) ^ 1;
    dec.write(bad);
    dec.write(obj.subarray(chunkStart(2)));
    assertWalshipError(await errored, ExitCode.integrity, /chunk 1/);
    assert.equal(Buffer.concat(got).length, CHUNK_SIZE);
  });
});

// ------------------------------------------------------------------ scrypt

describe('age scrypt', () => {
  it('round-trips with a passphrase, and refuses a wrong one', async () => {
    const plain = random(70_000);
    const enc = await encryptBuffer(plain, [scryptRecipient(PASSPHRASE, 10)]);
    assert.match(enc.subarray(0, 80).toString('latin1'), /^age-encryption\.org\/v1\n-> scrypt [A-Za-z0-9+/]{22} 10\n/);
    assert.deepEqual(await decryptBuffer(enc, [scryptIdentity(PASSPHRASE)]), plain);
    assert.deepEqual(await decryptBuffer(enc, [idA, scryptIdentity('nope'), scryptIdentity(PASSPHRASE)]), plain);
    await expectIntegrity(enc, [scryptIdentity(`${PASSPHRASE}!`)], /incorrect passphrase/);
    await expectIntegrity(enc, [idA], /no passphrase/);
  });

  it('uses the default work factor 18 like age', async () => {
    const enc = await encryptBuffer(Buffer.from('x'), [scryptRecipient(PASSPHRASE)]);
    assert.match(enc.toString('latin1'), /-> scrypt \S+ 18\n/);
  });

  function scryptObject(logN: string, extra: Stanza[] = []): Buffer {
    const fileKey = random(16);
    const stanza: Stanza = { type: 'scrypt', args: [random(16).toString('base64').replace(/=+$/, ''), logN], body: random(32) };
    return craft([stanza, ...extra], fileKey, [{ plain: Buffer.from('x'), last: true }]);
  }

  it('refuses an absurd work factor (2^30) at once', async () => {
    const t0 = performance.now();
    await expectIntegrity(scryptObject('30'), [scryptIdentity(PASSPHRASE)], /absurd/);
    assert.ok(performance.now() - t0 < 500, 'no scrypt work was spent');
    await expectIntegrity(scryptObject('23'), [scryptIdentity(PASSPHRASE)], /absurd/);
  });

  it('refuses a too-low or malformed work factor', async () => {
    await expectIntegrity(scryptObject('9'), [scryptIdentity(PASSPHRASE)], /too low/);
    await expectIntegrity(scryptObject('1'), [scryptIdentity(PASSPHRASE)], /too low/);
    for (const bad of ['018', '0', '-1', '1e1', 'x', '99999999999']) {
      await expectIntegrity(scryptObject(bad), [scryptIdentity(PASSPHRASE)], /malformed/);
    }
  });

  it('requires the scrypt stanza to be the only one', async () => {
    const extra = x25519Stanzas(recA, random(16));
    await expectIntegrity(scryptObject('10', extra), [scryptIdentity(PASSPHRASE)], /only stanza/);
    await expectIntegrity(scryptObject('10', extra), [idA], /only stanza/);
    const two = scryptObject('10', [{ type: 'scrypt', args: ['AAAAAAAAAAAAAAAAAAAAAA', '10'], body: random(32) }]);
    await expectIntegrity(two, [scryptIdentity(PASSPHRASE)], /only stanza/);
  });
});

// ------------------------------------------------------------------ no secrets

describe('age error messages', () => {
  it('never contain key material (checked over every error seen above)', () => {
    assert.ok(seenMessages.length > 50, `only ${seenMessages.length} messages seen; run the whole file`);
    for (const m of seenMessages) {
      for (const s of SECRETS) {
        assert.ok(!m.includes(s), `message leaks a secret: ${m}`);
        assert.ok(!m.toLowerCase().includes(s.toLowerCase().slice(0, 30)), `message leaks part of a secret: ${m}`);
      }
    }
  });
});
