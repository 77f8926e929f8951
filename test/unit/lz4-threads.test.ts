/**
 * lz4 frames made on walship's own worker threads (backup-push's parts): the object is the same,
 * byte for byte, as the one the thread-pool encoder makes (which the lz4 CLI interop test reads);
 * the encoder tells a chunk's owner when it may free it, and only once the chunk is copied; a
 * worker that goes away fails the stream instead of hanging it.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decryptBuffer, generateIdentity, parseIdentity } from '../../src/codec/age/index.ts';
import { decodeObject, encodeObject, type EncodeOptions } from '../../src/codec/codec.ts';
import { encryptionFromConfig } from '../../src/codec/keys.ts';
import { Lz4FrameThreads } from '../../src/codec/lz4-threads.ts';
import { loadConfig } from '../../src/config/load.ts';
import { keystream } from '../helpers/wal-files.ts';

const MiB = 1024 * 1024;

/** Half compressible text, half noise. */
function payloadOf(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size, 'walship lz4 frames on threads of its own; ');
  keystream(`lz4-threads-${seed}`, size >> 1).copy(out, 0);
  return out;
}

/** The payload in chunks of its own memory, cut at `cuts`. */
function chunksOf(payload: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => Math.min(c, payload.length)))].sort((a, b) => a - b).concat(payload.length);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const at of points) {
    if (at > from) chunks.push(Buffer.from(Uint8Array.prototype.slice.call(payload, from, at).buffer));
    from = at;
  }
  return chunks;
}

const encode = async (chunks: Buffer[], options: EncodeOptions) => buffer(await encodeObject(Readable.from(chunks, { objectMode: false }), options));

describe('Lz4FrameThreads', () => {
  const threads = new Lz4FrameThreads(2);
  after(() => threads.close());

  test('the same object as the thread pool makes, whatever the chunks; each chunk is handed back once, after it is copied', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 13 * MiB }), fc.array(fc.nat({ max: 13 * MiB }), { maxLength: 6 }), fc.constantFrom(1, 2), async (size, cuts, framesInFlight) => {
        const payload = payloadOf(size, size);
        const chunks = chunksOf(payload, cuts);
        const handedBack: Buffer[] = [];
        // Scribbled over as soon as it is handed back: a chunk the encoder still needed would corrupt the object.
        const copied = (chunk: Buffer) => {
          handedBack.push(chunk);
          chunk.fill(0xee);
        };
        const expected = await encode([payload], { compression: 'lz4' });
        const object = await encode(chunks, { compression: 'lz4', lz4: { compress: threads.compress, copied, framesInFlight } });
        assert.ok(object.equals(expected), 'same bytes as the thread-pool encoder');
        assert.ok((await buffer(decodeObject(Readable.from([object]), undefined, 'test object'))).equals(payload));
        assert.equal(handedBack.length, chunks.length);
        assert.deepEqual(new Set(handedBack), new Set(chunks));
      }),
      { numRuns: 12 },
    );
  });

  test('frames from the threads, then age: decrypting, then decoding lz4 (as age and lz4 do) gives the payload', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'walship-lz4-threads-'));
    try {
      const emptyConfig = join(dir, 'empty.json');
      writeFileSync(emptyConfig, '{}');
      const key = generateIdentity();
      const encryption = await encryptionFromConfig(loadConfig({ env: { WALSHIP_RECIPIENTS: key.recipient }, configPath: emptyConfig }));
      const payload = payloadOf(9 * MiB + 321, 9);
      const object = await encode(chunksOf(payload, [MiB, 5 * MiB]), { compression: 'lz4', encryption, lz4: { compress: threads.compress, framesInFlight: 1 } });
      const decrypted = await decryptBuffer(object, [parseIdentity(key.identity)]);
      assert.ok((await buffer(decodeObject(Readable.from([decrypted]), undefined, 'decrypted object'))).equals(payload));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('frames made without the content checksum (backup parts) say so in their header, and decode to the payload', async () => {
    const unchecked = new Lz4FrameThreads(1, { contentChecksum: false });
    try {
      const payload = payloadOf(9 * MiB + 5, 4);
      const object = await encode(chunksOf(payload, [3 * MiB]), { compression: 'lz4', lz4: { compress: unchecked.compress, framesInFlight: 1 } });
      const withChecksum = await encode([payload], { compression: 'lz4' });
      // FLG, the byte after the 4-byte magic: bit 2 announces the content checksum (4 bytes at the frame's end).
      assert.equal(object[4]! & 0x04, 0);
      assert.equal(withChecksum[4]! & 0x04, 0x04);
      assert.equal(withChecksum.length - object.length, 3 * 4, 'three frames, 4 bytes of checksum fewer each');
      assert.ok((await buffer(decodeObject(Readable.from([object]), undefined, 'test object'))).equals(payload));
    } finally {
      await unchecked.close();
    }
  });

  test('a worker that goes away fails the stream, it does not hang', async () => {
    const doomed = new Lz4FrameThreads(1);
    const payload = payloadOf(40 * MiB, 3);
    const encoding = encode(chunksOf(payload, [MiB, 9 * MiB, 20 * MiB]), { compression: 'lz4', lz4: { compress: doomed.compress } });
    setImmediate(() => void doomed.close());
    await assert.rejects(encoding, /lz4 worker thread exited/);
  });
});
