import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { ownsMemory, releaseBuffer } from '../../src/buffers.ts';

test('releaseBuffer frees a buffer that owns its memory, once', () => {
  const buf = Buffer.allocUnsafeSlow(1 << 20);
  assert.equal(ownsMemory(buf), true);
  releaseBuffer(buf);
  assert.equal(buf.length, 0);
  assert.equal((buf.buffer as ArrayBuffer).detached, true);
  releaseBuffer(buf); // again: nothing happens, no throw
});

test('releaseBuffer leaves slices and pooled buffers alone', () => {
  const whole = Buffer.alloc(1024, 7);
  const slice = whole.subarray(10, 20);
  releaseBuffer(slice);
  assert.equal(whole.length, 1024);
  // Small Buffer.from / allocUnsafe results share Node's 8 KiB pool with other buffers.
  const pooled = Buffer.from('abc');
  const neighbour = Buffer.from('def');
  releaseBuffer(pooled);
  assert.equal(pooled.toString(), 'abc');
  assert.equal(neighbour.toString(), 'def');
});

test("releaseBuffer frees a cipher's output, so the next one can reuse the memory", () => {
  const cipher = crypto.createCipheriv('chacha20-poly1305', crypto.randomBytes(32), crypto.randomBytes(12), { authTagLength: 16 });
  const out = cipher.update(crypto.randomBytes(65536));
  assert.equal(ownsMemory(out), true, 'node:crypto returns each update in memory of its own');
  releaseBuffer(out);
  assert.equal(out.length, 0);
});

test('lz4-napi returns each decoded frame in memory of its own (which backup-fetch frees once written)', async () => {
  const { compressFrameSync, decompressFrameSync } = await import('lz4-napi');
  const frame = decompressFrameSync(compressFrameSync(Buffer.alloc(1 << 20, 1)));
  assert.equal(frame.length, 1 << 20);
  assert.equal(ownsMemory(frame), true);
});
