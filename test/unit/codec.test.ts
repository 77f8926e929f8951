/**
 * The object codec: what walship stores must come back byte for byte, and a damaged object must
 * fail with an integrity error (exit 4), never decode to something else or to a short payload.
 *
 * Limits of the format itself, which these tests respect and the wal-fetch tests cover instead:
 * - `none` objects are the raw payload, so the codec cannot notice truncation or bit flips in them;
 * - a cut or flip inside the 4-byte magic leaves bytes that no longer name a codec, which then read
 *   as `none`;
 * - lz4 objects are a series of independent frames, so a cut exactly at a frame boundary leaves a
 *   valid shorter lz4 stream.
 * wal-fetch catches all three for segments (size and page header checked against the name).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { decodeObject, encodeObject, sniff, type Compression } from '../../src/codec/codec.ts';
import { ExitCode, WalshipError } from '../../src/errors.ts';
import { keystream } from '../helpers/wal-files.ts';

const MiB = 1024 * 1024;
const frame = 4 * MiB;
const compressions: Compression[] = ['zstd', 'lz4', 'none'];

/** Split `bytes` at the given cut points (any order, duplicates allowed) into a stream's chunks. */
function split(bytes: Buffer, cuts: readonly number[] = []): Buffer[] {
  const points = [...new Set(cuts.map((c) => Math.min(Math.max(0, c), bytes.length)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const at of [...points, bytes.length]) {
    if (at > from) chunks.push(bytes.subarray(from, at));
    from = at;
  }
  return chunks;
}

const stream = (chunks: Buffer[]) => Readable.from(chunks, { objectMode: false });

async function encode(payload: Buffer, compression: Compression, cuts?: number[]): Promise<Buffer> {
  return buffer(await encodeObject(stream(split(payload, cuts)), { compression }));
}

async function decode(object: Buffer, cuts?: number[]): Promise<Buffer> {
  return buffer(decodeObject(stream(split(object, cuts)), undefined, 'test-object'));
}

/** Decoding must fail with exit code 4 and name the object. */
async function assertIntegrityFailure(object: Buffer, message: string, cuts?: number[]): Promise<void> {
  await assert.rejects(decode(object, cuts), (err: unknown) => {
    assert.ok(err instanceof WalshipError, `${message}: ${String(err)}`);
    assert.equal(err.exitCode, ExitCode.integrity, message);
    assert.match(err.message, /test-object/);
    return true;
  }, `${message}: decoded without an error`);
}

/** Compressible but not trivial: runs of text and of random bytes. */
function mixed(size: number, seed = `mixed-${size}`): Buffer {
  const out = Buffer.alloc(size);
  const random = keystream(seed, size);
  for (let at = 0; at < size; at += 16384) {
    if ((at / 16384) % 2) random.copy(out, at, at, Math.min(at + 16384, size));
    else out.write(`row ${at} ${'lorem ipsum '.repeat(1400)}`.slice(0, Math.min(16384, size - at)), at);
  }
  return out;
}

describe('round trip', () => {
  const sizes = [0, 1, 65535, 65536, frame - 1, frame, frame + 1, 2 * frame, 2 * frame + 1];
  for (const compression of compressions) {
    test(`${compression}: sizes 0, 1, 64 KiB ±1, around the 4 MiB frame boundary`, async () => {
      for (const size of sizes) {
        const payload = mixed(size);
        const object = await encode(payload, compression);
        assert.ok((await decode(object)).equals(payload), `${compression} ${size} bytes`);
      }
    });

    test(`${compression}: 9 MiB of random bytes fed in 1 MiB chunks, read back in odd-sized chunks`, async () => {
      const payload = randomBytes(9 * MiB + 7);
      const object = await encode(payload, compression, Array.from({ length: 9 }, (_, i) => (i + 1) * MiB));
      const cuts = Array.from({ length: 200 }, (_, i) => i * 47_111 + (i % 7));
      assert.ok((await decode(object, cuts)).equals(payload));
    });

    test(`${compression}: any payload, any input chunking, any object chunking`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.uint8Array({ maxLength: 40_000 }),
          fc.array(fc.nat({ max: 40_000 }), { maxLength: 12 }),
          fc.array(fc.nat({ max: 40_000 }), { maxLength: 40 }),
          fc.boolean(),
          async (bytes, inputCuts, objectCuts, repetitive) => {
            // Half the runs repeat the bytes, so the compressor finds matches across chunks.
            const payload = repetitive ? Buffer.concat([Buffer.from(bytes), Buffer.from(bytes), Buffer.from(bytes)]) : Buffer.from(bytes);
            const object = await encode(payload, compression, inputCuts);
            assert.ok((await decode(object, objectCuts)).equals(payload));
          },
        ),
        { numRuns: 60 },
      );
    });
  }

  test('lz4 objects are several frames, each read correctly when a chunk ends anywhere in a header', async () => {
    const payload = mixed(2 * frame + 100);
    const object = await encode(payload, 'lz4');
    // Every byte of the object is its own chunk around the start of the second and third frames.
    const starts = frameStarts(object);
    assert.equal(starts.length, 3);
    const cuts = starts.flatMap((s) => Array.from({ length: 30 }, (_, i) => s - 10 + i));
    assert.ok((await decode(object, cuts)).equals(payload));
  });

  test('zstd honours the compression level and the level does not change the payload', async () => {
    const payload = mixed(512 * 1024);
    const fast = await buffer(await encodeObject(stream([payload]), { compression: 'zstd', level: 1 }));
    const small = await buffer(await encodeObject(stream([payload]), { compression: 'zstd', level: 19 }));
    assert.ok(small.length < fast.length);
    assert.ok((await decode(small)).equals(payload));
  });
});

/** Offsets of the LZ4 frames in a walship lz4 object (parsing block headers, as the decoder does). */
function frameStarts(object: Buffer): number[] {
  const starts: number[] = [];
  let at = 0;
  while (at < object.length) {
    assert.equal(object.readUInt32LE(at), 0x184d2204, `frame magic at ${at}`);
    starts.push(at);
    const flags = object[at + 4]!;
    let cursor = at + 4 + 2 + (flags & 0x08 ? 8 : 0) + (flags & 0x01 ? 4 : 0) + 1;
    for (;;) {
      const word = object.readUInt32LE(cursor);
      if (word === 0) break;
      cursor += 4 + (word & 0x7fffffff) + (flags & 0x10 ? 4 : 0);
    }
    at = cursor + 4 + (flags & 0x04 ? 4 : 0);
  }
  return starts;
}

describe('sniff', () => {
  test('names the codec that wrote an object', async () => {
    for (const compression of compressions) {
      for (const payload of [Buffer.alloc(0), Buffer.from('1\t0/3000000\tno recovery target specified\n'), mixed(100_000)]) {
        const object = await encode(payload, compression);
        const expected = compression === 'none' ? 'none' : compression;
        assert.equal(sniff(object), expected, `${compression} of ${payload.length} bytes`);
        assert.equal(sniff(object.subarray(0, 4)), expected);
      }
    }
  });

  test('age, and raw payloads that merely start like nothing known', () => {
    assert.equal(sniff(Buffer.from('age-encryption.org/v1\n-> X25519 abc\n')), 'age');
    assert.equal(sniff(Buffer.from('age-encryption.org/v2\n')), 'none');
    assert.equal(sniff(Buffer.alloc(0)), 'none');
    assert.equal(sniff(Buffer.from([0x28, 0xb5, 0x2f])), 'none');
    assert.equal(sniff(Buffer.from([0x10, 0xd1, 0x02, 0x00, 0x01])), 'none'); // a WAL page header
  });

  test('an encrypted object without a configured identity is an integrity error that says what to set', async () => {
    await assert.rejects(decode(Buffer.from('age-encryption.org/v1\n-> X25519 abc\n---\n')), (err: unknown) => {
      assert.ok(err instanceof WalshipError);
      assert.equal(err.exitCode, ExitCode.integrity);
      assert.match(err.message, /WALSHIP_IDENTITY_FILE/);
      return true;
    });
  });
});

describe('damaged objects', () => {
  for (const compression of ['zstd', 'lz4'] as const) {
    test(`${compression}: a bit flipped anywhere after the magic fails with exit 4, or decodes to the exact payload`, async () => {
      const payload = mixed(300_000);
      const object = await encode(payload, compression);
      let detected = 0;
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 4, max: object.length - 1 }), fc.integer({ min: 0, max: 7 }), async (offset, bit) => {
          const damaged = Buffer.from(object);
          damaged[offset]! ^= 1 << bit;
          try {
            const out = await decode(damaged);
            // A few header bits are unused by the decoder; flipping them must not change the payload.
            assert.ok(out.equals(payload), `flip at ${offset}.${bit} decoded to different bytes`);
          } catch (err) {
            assert.ok(err instanceof WalshipError, String(err));
            assert.equal(err.exitCode, ExitCode.integrity);
            detected++;
          }
        }),
        { numRuns: 150 },
      );
      assert.ok(detected > 140, `only ${detected} of 150 flips detected`);
    });

    test(`${compression}: flips in the last bytes (content checksum) and in the middle of the data are caught`, async () => {
      const payload = mixed(1 * MiB);
      const object = await encode(payload, compression);
      for (const offset of [object.length - 1, object.length - 4, Math.floor(object.length / 2), Math.floor(object.length / 3)]) {
        const damaged = Buffer.from(object);
        damaged[offset]! ^= 0x10;
        await assertIntegrityFailure(damaged, `${compression} flip at ${offset} of ${object.length}`);
      }
    });

    test(`${compression}: truncated at any offset past the magic fails with exit 4, never a short payload`, async () => {
      const payload = mixed(3 * MiB);
      const object = await encode(payload, compression);
      const offsets = [4, 5, 6, 7, 8, 12, 13, 100, 4096, Math.floor(object.length / 2), object.length - 5, object.length - 4, object.length - 1];
      for (const cut of offsets) await assertIntegrityFailure(object.subarray(0, cut), `${compression} cut at ${cut} of ${object.length}`);
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 4, max: object.length - 1 }), fc.array(fc.nat({ max: object.length }), { maxLength: 8 }), async (cut, chunking) => {
          await assertIntegrityFailure(object.subarray(0, cut), `${compression} cut at ${cut}`, chunking);
        }),
        { numRuns: 40 },
      );
    });

    test(`${compression}: trailing garbage after the object fails with exit 4`, async () => {
      const payload = mixed(100_000);
      const object = await encode(payload, compression);
      await assertIntegrityFailure(Buffer.concat([object, Buffer.from('garbage!')]), `${compression} + garbage`);
    });
  }

  test('lz4 with several frames: a cut inside any frame fails with exit 4', async () => {
    const payload = mixed(2 * frame + 1000);
    const object = await encode(payload, 'lz4');
    const starts = frameStarts(object);
    // Inside each frame's header, its first block, and its end mark / content checksum.
    const cuts = starts
      .flatMap((s) => [s + 1, s + 5, s + 7, s + 11, s + 1000])
      .concat(starts.slice(1).map((s) => s - 1), [object.length - 1])
      .filter((cut) => cut >= 4 && cut < object.length); // past the magic (see the top of this file)
    for (const cut of cuts) await assertIntegrityFailure(object.subarray(0, cut), `lz4 cut at ${cut} (frames at ${starts.join(', ')})`);
  });

  test('an lz4 frame that is not version 1, or a zstd frame with reserved bits set, is corrupt', async () => {
    const lz4 = await encode(mixed(1000), 'lz4');
    const badVersion = Buffer.from(lz4);
    badVersion[4] = (badVersion[4]! & 0x3f) | 0x80;
    await assertIntegrityFailure(badVersion, 'lz4 version 2');
    const zstd = await encode(mixed(1000), 'zstd');
    const reserved = Buffer.from(zstd);
    reserved[4]! |= 0x08;
    await assertIntegrityFailure(reserved, 'zstd reserved bit');
  });
});
