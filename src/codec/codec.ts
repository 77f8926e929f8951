import { Readable, type Transform } from 'node:stream';
import { integrityError, WalshipError } from '../errors.ts';
import type { Lz4EncoderOptions } from './lz4-frames.ts';

export type Compression = 'zstd' | 'lz4' | 'none';

/**
 * Encryption plugs into the codec as stream factories, so the codec does not depend on how
 * keys are configured. `decrypt` is undefined when no identity is configured.
 */
export interface Encryption {
  /** A Transform from plaintext to the encrypted object (its module loads on first use). */
  encrypt?: () => Promise<Transform>;
  /**
   * The same as `encrypt`, for payloads already in memory (one WAL segment): resolves, once the
   * header is made, to a function that encrypts into `into` if it is large enough.
   */
  wholeEncryptor?: () => Promise<(payload: Buffer, into?: Buffer) => Buffer>;
  decrypt?: () => Promise<Transform>;
}

export interface EncodeOptions {
  compression: Compression;
  level?: number | undefined;
  encryption?: Encryption | undefined;
  /** lz4's encoder: where frames are made, and who hears of consumed input. */
  lz4?: Lz4EncoderOptions | undefined;
}

const zstdMagic = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const lz4Magic = Buffer.from([0x04, 0x22, 0x4d, 0x18]);
const ageMagic = Buffer.from('age-encryption.org/v1\n');

/** Turn a payload stream into the stored object's bytes: compress, then (optionally) encrypt. */
export async function encodeObject(payload: Readable, options: EncodeOptions): Promise<Readable> {
  const stages: Transform[] = [];
  if (options.compression === 'zstd') {
    const { CompressStream } = await import('zstd-napi');
    // nbWorkers moves compression onto zstd's own threads, off Node's main thread; the content
    // checksum makes any corruption of a stored object detectable on read, as the zstd CLI does.
    stages.push(new CompressStream({ compressionLevel: options.level ?? 1, checksumFlag: true, nbWorkers: 1 }));
  } else if (options.compression === 'lz4') {
    const { Lz4FrameEncoder } = await import('./lz4-frames.ts');
    stages.push(new Lz4FrameEncoder(options.lz4));
  }
  if (options.encryption?.encrypt) stages.push(await options.encryption.encrypt());
  const encoded = stages.reduce<Readable>((stream, stage) => stream.compose(stage), payload);
  // Storage may start reading only after its own set-up (a directory, a connection); an error
  // emitted before then must not crash the process. The reader still gets it: iterating an
  // errored stream rejects with its error.
  encoded.on('error', () => {});
  return encoded;
}

/** Which codec wrote these first bytes. */
export function sniff(head: Buffer): 'age' | 'zstd' | 'lz4' | 'none' {
  if (startsWith(head, ageMagic)) return 'age';
  if (startsWith(head, zstdMagic)) return 'zstd';
  if (startsWith(head, lz4Magic)) return 'lz4';
  return 'none';
}

const startsWith = (head: Buffer, magic: Buffer) => head.length >= magic.length && head.subarray(0, magic.length).equals(magic);

/**
 * Decode a stored object: detect encryption by its header, then the compression by its magic,
 * and undo both. Every decoding failure surfaces as an integrity error (exit 4).
 */
export function decodeObject(source: AsyncIterable<Buffer>, encryption: Encryption | undefined, what: string): Readable {
  return Readable.from(decodeLayers(source, encryption, what), { objectMode: false });
}

async function* decodeLayers(source: AsyncIterable<Buffer>, encryption: Encryption | undefined, what: string): AsyncGenerator<Buffer> {
  const [head, rest] = await peek(decryptedObject(source, encryption, what), zstdMagic.length);
  let stream: AsyncIterable<Buffer> = prepend(head, rest);
  const kind = sniff(head);
  if (kind === 'age') throw integrityError(`${what}: object is encrypted twice`);
  if (kind === 'zstd') {
    const { DecompressStream } = await import('zstd-napi');
    stream = through(stream, new DecompressStream());
  } else if (kind === 'lz4') {
    const { Lz4FrameDecoder } = await import('./lz4-frames.ts');
    stream = through(stream, new Lz4FrameDecoder());
  }
  yield* guard(stream, what);
}

/**
 * A stored object's bytes with the encryption (if any) undone, still compressed: for readers
 * that decompress elsewhere (a worker thread). Failures are integrity errors (exit 4).
 */
export async function* decryptedObject(source: AsyncIterable<Buffer>, encryption: Encryption | undefined, what: string): AsyncGenerator<Buffer> {
  const [head, rest] = await peek(source, ageMagic.length);
  const stream = prepend(head, rest);
  if (sniff(head) !== 'age') return yield* stream;
  if (!encryption?.decrypt) {
    throw integrityError(`${what}: object is encrypted; set WALSHIP_IDENTITY_FILE (or WALSHIP_PASSPHRASE_FILE) to read it`);
  }
  yield* guard(through(stream, await encryption.decrypt()), what);
}

/** Re-throw decoding failures as integrity errors naming the object; keep walship's own errors. */
async function* guard(stream: AsyncIterable<Buffer>, what: string): AsyncGenerator<Buffer> {
  try {
    yield* stream;
  } catch (err) {
    if (err instanceof WalshipError) throw err;
    throw integrityError(`${what}: corrupt object (${err instanceof Error ? err.message : String(err)})`, err);
  }
}

/** Read at least `count` bytes (fewer only at end of stream); returns them and the rest of the stream. */
async function peek(source: AsyncIterable<Buffer>, count: number): Promise<[Buffer, AsyncIterator<Buffer>]> {
  const iterator = source[Symbol.asyncIterator]();
  const parts: Buffer[] = [];
  let size = 0;
  while (size < count) {
    const next = await iterator.next();
    if (next.done) break;
    parts.push(next.value);
    size += next.value.length;
  }
  return [parts.length === 1 ? parts[0]! : Buffer.concat(parts, size), iterator];
}

async function* prepend(head: Buffer, rest: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  if (head.length) yield head;
  for (;;) {
    const next = await rest.next();
    if (next.done) return;
    yield next.value;
  }
}

const through = (source: AsyncIterable<Buffer>, stage: Transform): AsyncIterable<Buffer> => Readable.from(source).compose(stage);
