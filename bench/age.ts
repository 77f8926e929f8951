/**
 * Encryption throughput: a 1 GiB plaintext stream (generated in memory,
 * 64 KiB writes by default) piped through the age encrypt and decrypt
 * Transforms into a null sink. Prints MB/s (10^6 bytes per second).
 *
 *   node bench/age.ts [--size-mib 1024] [--write-kib 64] [--json]
 */
import crypto from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { createDecryptStream, createEncryptStream, generateIdentity, parseIdentity, parseRecipient } from '../src/codec/age/index.ts';

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    'write-kib': { type: 'string', default: '64' },
    json: { type: 'boolean', default: false },
  },
});
const total = Number(values['size-mib']) * 1024 * 1024;
const writeSize = Number(values['write-kib']) * 1024;

/** A source of `total` bytes in `writeSize` writes, cycling over a few random blocks. */
function source(): Readable {
  const blocks = Array.from({ length: 8 }, () => crypto.randomBytes(writeSize));
  let sent = 0;
  let i = 0;
  return new Readable({
    read() {
      while (sent < total) {
        const n = Math.min(writeSize, total - sent);
        const block = blocks[i++ % blocks.length] as Buffer;
        sent += n;
        if (!this.push(n === block.length ? block : block.subarray(0, n))) return;
      }
      this.push(null);
    },
  });
}

function sink(onChunk?: (b: Buffer) => void): Writable {
  return new Writable({
    writev(chunks, cb) {
      if (onChunk) for (const c of chunks) onChunk(c.chunk as Buffer);
      cb();
    },
    write(chunk: Buffer, _enc, cb) {
      onChunk?.(chunk);
      cb();
    },
  });
}

const { identity, recipient } = generateIdentity();
const r = parseRecipient(recipient);
const id = parseIdentity(identity);

// Encrypt: plaintext -> age -> null.
let t0 = process.hrtime.bigint();
await pipeline(source(), createEncryptStream([r]), sink());
const encSeconds = Number(process.hrtime.bigint() - t0) / 1e9;

// Decrypt needs ciphertext: keep one encrypted copy of a smaller prefix in
// memory and replay it, so the measurement is of decryption, not of
// encryption. The ciphertext of `total` bytes is produced once, untimed.
const cipherParts: Buffer[] = [];
await pipeline(source(), createEncryptStream([r]), sink((b) => cipherParts.push(b)));
const ciphertext = Buffer.concat(cipherParts);
cipherParts.length = 0;

function replay(): Readable {
  let off = 0;
  return new Readable({
    read() {
      while (off < ciphertext.length) {
        const n = Math.min(writeSize, ciphertext.length - off);
        const chunk = ciphertext.subarray(off, off + n);
        off += n;
        if (!this.push(chunk)) return;
      }
      this.push(null);
    },
  });
}

let plainBytes = 0;
t0 = process.hrtime.bigint();
await pipeline(replay(), createDecryptStream([id]), sink((b) => (plainBytes += b.length)));
const decSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
if (plainBytes !== total) throw new Error(`decrypted ${plainBytes} bytes, expected ${total}`);

const encMBs = total / encSeconds / 1e6;
const decMBs = total / decSeconds / 1e6;
if (values.json) {
  console.log(JSON.stringify({ bytes: total, writeBytes: writeSize, encryptMBps: Math.round(encMBs), decryptMBps: Math.round(decMBs) }));
} else {
  console.log(`age encrypt: ${encMBs.toFixed(0)} MB/s (${(total / 2 ** 20).toFixed(0)} MiB in ${encSeconds.toFixed(2)} s, ${writeSize / 1024} KiB writes)`);
  console.log(`age decrypt: ${decMBs.toFixed(0)} MB/s (${(total / 2 ** 20).toFixed(0)} MiB in ${decSeconds.toFixed(2)} s)`);
}
