/**
 * The synchronous decoder backup-fetch's worker threads use (src/codec/decoder.ts) against the
 * objects the codec's encoder writes: any payload, any way the input is cut, any size of the
 * caller's scratch buffer gives back the payload; a cut or damaged object is an error, never a
 * silently short payload.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { encodeObject, type Compression } from '../../src/codec/codec.ts';
import { payloadDecoder, type DecoderOptions } from '../../src/codec/decoder.ts';

const frame = 4 * 1024 * 1024;
const encode = async (payload: Buffer, compression: Compression) => buffer(await encodeObject(Readable.from([payload], { objectMode: false }), { compression }));

/**
 * Decode `object` fed in pieces cut at `cuts`, into scratch buffers of `scratchSize` bytes. With
 * `pieces`, each piece is a copy with memory of its own (as backup-fetch's chunks are), and is
 * collected there.
 */
function decode(object: Buffer, cuts: number[], scratchSize: number, pieces?: Buffer[], options?: DecoderOptions): Buffer {
  const points = [...new Set(cuts.map((c) => Math.min(c, object.length)))].sort((a, b) => a - b).concat(object.length);
  const decoder = payloadDecoder(object.subarray(0, 4), options);
  const scratch = Buffer.alloc(scratchSize);
  const out: Buffer[] = [];
  let from = 0;
  for (const at of points) {
    if (at <= from) continue;
    const piece = pieces ? Buffer.from(Uint8Array.prototype.slice.call(object, from, at).buffer) : object.subarray(from, at);
    pieces?.push(piece);
    decoder.push(piece);
    // Copied: output in the scratch buffer is only valid until the next call.
    for (let chunk = decoder.next(scratch); chunk; chunk = decoder.next(scratch)) out.push(Buffer.from(chunk));
    from = at;
  }
  decoder.end();
  return Buffer.concat(out);
}

/** True when `object` decodes to exactly `payload`. */
function decodes(object: Buffer, options: DecoderOptions, payload: Buffer): boolean {
  try {
    return decode(object, [], 65536, undefined, options).equals(payload);
  } catch {
    return false;
  }
}

/** Compressible and not: text runs and bytes from a seed. */
function payloadOf(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  let x = seed | 1;
  for (let i = 0; i < size; i++) {
    if ((i >> 12) % 2) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      out[i] = x & 0xff;
    } else out[i] = 97 + (i % 23);
  }
  return out;
}

describe('payloadDecoder', () => {
  for (const compression of ['zstd', 'lz4', 'none'] as const) {
    test(`${compression}: the payload back, whatever the cuts and the scratch size`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: 300_000 }), fc.integer(), fc.array(fc.nat({ max: 300_000 }), { maxLength: 6 }), fc.integer({ min: 1, max: 200_000 }), async (size, seed, cuts, scratchSize) => {
          const payload = payloadOf(size, seed);
          const object = await encode(payload, compression);
          assert.ok(decode(object, cuts, scratchSize).equals(payload));
        }),
        { numRuns: 40 },
      );
    });
  }

  test('the decoder frees each input once decoded, and only then (plain input comes back as output)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('zstd' as const, 'lz4' as const, 'none' as const), fc.integer({ min: 1, max: 2 * frame + 5000 }), fc.array(fc.nat({ max: 2 * frame }), { maxLength: 8 }), async (compression, size, cuts) => {
        const payload = payloadOf(size, size);
        const pieces: Buffer[] = [];
        // A piece freed too early would decode as nothing or garbage: the payload would differ.
        assert.ok(decode(await encode(payload, compression), cuts, 1 << 20, pieces).equals(payload));
        const freed = pieces.filter((p) => (p.buffer as ArrayBuffer).detached).length;
        assert.equal(freed, compression === 'none' ? 0 : pieces.length, `${compression}: ${freed} of ${pieces.length} inputs freed`);
      }),
      { numRuns: 25 },
    );
  });

  test('several lz4 frames and large zstd output (> 8 MiB)', async () => {
    const payload = payloadOf(2 * frame + 12345, 7);
    for (const compression of ['zstd', 'lz4'] as const) assert.ok(decode(await encode(payload, compression), [1, 5000, frame], 1 << 20).equals(payload), compression);
  });

  test('a cut object fails at the end; a damaged one fails where the damage is', async () => {
    const payload = payloadOf(3 * 65536 + 99, 11);
    for (const compression of ['zstd', 'lz4'] as const) {
      const object = await encode(payload, compression);
      for (const keep of [object.length - 1, Math.floor(object.length / 2), 10]) {
        assert.throws(() => decode(object.subarray(0, keep), [], 65536), /truncated|ends in the middle|corrupt|checksum|error/i, `${compression} cut to ${keep}`);
      }
      const damaged = Buffer.from(object);
      damaged[Math.floor(damaged.length / 2)]! ^= 0x10;
      assert.throws(() => decode(damaged, [], 65536), Error, `${compression} with a flipped bit`);
    }
  });

  test("zstd's own checksum: checked by default, skipped for a caller that verifies the content itself", async () => {
    const payload = payloadOf(200_000, 3);
    const object = await encode(payload, 'zstd');
    // The frame ends with its content checksum: damage only that.
    const damaged = Buffer.from(object);
    damaged[damaged.length - 1]! ^= 0x01;
    assert.throws(() => decode(damaged, [], 65536), /checksum/i);
    assert.ok(decode(damaged, [], 65536, undefined, { contentVerifiedByCaller: true }).equals(payload));
    // Damage to the data itself is still an error, or at least not the payload.
    const broken = Buffer.from(object);
    broken[Math.floor(broken.length / 2)]! ^= 0x10;
    assert.ok(!decodes(broken, { contentVerifiedByCaller: true }, payload));
  });

  test('an encrypted object is not something it decodes', () => {
    assert.throws(() => payloadDecoder(Buffer.from('age-encryption.org/v1\n')), /encrypted twice/);
  });
});
