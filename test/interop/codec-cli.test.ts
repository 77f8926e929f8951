/**
 * The escape hatch (DESIGN §3): a stored object decodes with the plain `zstd -d` / `lz4 -d`
 * CLIs, and files those CLIs make decode with walship.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { after, describe, test } from 'node:test';
import { decodeObject, encodeObject, sniff, type Compression } from '../../src/codec/codec.ts';
import { keystream, tempDir } from '../helpers/wal-files.ts';

const MiB = 1024 * 1024;
const scratch = tempDir('codec-cli');
after(() => scratch.remove());

/** Run a CLI with `input` on stdin; its stdout, or a failure with its stderr. */
function cli(command: string, args: string[], input: Buffer = Buffer.alloc(0)): Buffer {
  const result = spawnSync(command, args, { input, maxBuffer: 256 * MiB });
  assert.equal(result.status, 0, `${command} ${args.join(' ')}: ${result.stderr?.toString()}`);
  return result.stdout;
}

/** Half text, half random, in 16 KiB runs. */
function payload(size: number, seed: string): Buffer {
  const out = Buffer.alloc(size);
  const random = keystream(seed, size);
  for (let at = 0; at < size; at += 16384) {
    if ((at / 16384) % 2) random.copy(out, at, at, Math.min(at + 16384, size));
    else out.write(`${seed} ${at} ${'the quick brown fox '.repeat(900)}`.slice(0, Math.min(16384, size - at)), at);
  }
  return out;
}

const encode = async (bytes: Buffer, compression: Compression) =>
  buffer(await encodeObject(Readable.from([bytes], { objectMode: false }), { compression }));
const decode = (object: Buffer) => buffer(decodeObject(Readable.from([object], { objectMode: false }), undefined, 'cli-made'));

describe('walship objects decode with the standard CLIs', () => {
  test('zstd -d reads a walship zstd object (checksum verified by the CLI)', async () => {
    for (const size of [0, 1, 3 * MiB + 5]) {
      const bytes = payload(size, `zstd-${size}`);
      const object = await encode(bytes, 'zstd');
      const path = join(scratch.path, `obj-${size}.zst`);
      writeFileSync(path, object);
      assert.ok(cli('zstd', ['-d', '-c', '-q', path]).equals(bytes), `zstd -d of ${size} bytes`);
      // The checksum is there: zstd -t verifies it, and a flipped byte fails it.
      cli('zstd', ['-t', '-q', path]);
      if (size > 0) {
        const damaged = Buffer.from(object);
        damaged[damaged.length - 2]! ^= 0xff;
        const result = spawnSync('zstd', ['-d', '-c', '-q'], { input: damaged });
        assert.notEqual(result.status, 0, 'zstd -d must reject a damaged object');
      }
    }
  });

  test('lz4 -d reads a walship lz4 object of several frames (> 8 MiB)', async () => {
    const bytes = payload(9 * MiB + 123, 'lz4-multi');
    const object = await encode(bytes, 'lz4');
    const path = join(scratch.path, 'obj.lz4');
    writeFileSync(path, object);
    assert.ok(cli('lz4', ['-d', '-c', '-q', path]).equals(bytes));
    cli('lz4', ['-t', '-q', path]);
  });

  test('lz4 -d reads walship lz4 objects of 0 bytes and of exactly one frame', async () => {
    for (const size of [0, 4 * MiB]) {
      const bytes = payload(size, `lz4-${size}`);
      assert.ok(cli('lz4', ['-d', '-c', '-q'], await encode(bytes, 'lz4')).equals(bytes), `${size} bytes`);
    }
  });
});

describe('files made by the CLIs decode with walship', () => {
  const bytes = payload(9 * MiB + 77, 'cli-made');

  test('zstd -1, zstd -9 --long, zstd --no-check, and two concatenated zstd frames', async () => {
    for (const args of [['-1'], ['-9', '--long=24'], ['-3', '--no-check'], ['-1', '-T2']]) {
      const object = cli('zstd', [...args, '-c', '-q'], bytes);
      assert.equal(sniff(object), 'zstd');
      assert.ok((await decode(object)).equals(bytes), `zstd ${args.join(' ')}`);
    }
    const first = cli('zstd', ['-1', '-c', '-q'], bytes.subarray(0, 1000));
    const second = cli('zstd', ['-1', '-c', '-q'], bytes.subarray(1000));
    assert.ok((await decode(Buffer.concat([first, second]))).equals(bytes), 'concatenated zstd frames');
  });

  test('lz4 with default settings, 64 KiB linked blocks, block checksums, content size, no frame checksum', async () => {
    for (const args of [[], ['-1'], ['-9'], ['-B4', '-BD'], ['-BX'], ['--content-size'], ['--no-frame-crc'], ['-B5', '-BX', '--content-size']]) {
      const object = cli('lz4', [...args, '-c', '-q'], bytes);
      assert.equal(sniff(object), 'lz4');
      assert.ok((await decode(object)).equals(bytes), `lz4 ${args.join(' ')}`);
    }
  });

  test('two concatenated lz4 CLI frames, and an empty lz4 file', async () => {
    const first = cli('lz4', ['-c', '-q'], bytes.subarray(0, 5 * MiB));
    const second = cli('lz4', ['-c', '-q'], bytes.subarray(5 * MiB));
    assert.ok((await decode(Buffer.concat([first, second]))).equals(bytes));
    assert.equal((await decode(cli('lz4', ['-c', '-q'], Buffer.alloc(0)))).length, 0);
  });

  test('a CLI-made object that was damaged fails as corrupt (exit 4)', async () => {
    for (const [command, args] of [
      ['zstd', ['-1', '-c', '-q']],
      ['lz4', ['-c', '-q']],
    ] as const) {
      const object = cli(command, [...args], bytes.subarray(0, MiB));
      const damaged = Buffer.from(object);
      damaged[Math.floor(damaged.length / 2)]! ^= 0x20;
      await assert.rejects(decode(damaged), (err: unknown) => (err as { exitCode?: number }).exitCode === 4, command);
    }
  });
});
