import { Transform, type TransformCallback } from 'node:stream';
import { compressFrame, decompressFrame } from 'lz4-napi';

/**
 * lz4 objects are a series of independent LZ4 frames of at most `frameInput` bytes of payload:
 * lz4-napi decodes small frames several times faster than one large frame, and the `lz4` CLI
 * reads concatenated frames as one stream (DESIGN §5). Work runs on lz4-napi's own threads.
 */
const frameInput = 4 * 1024 * 1024;
const frameMagic = 0x184d2204;

export class Lz4FrameEncoder extends Transform {
  #pending: Buffer[] = [];
  #size = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.#pending.push(chunk);
    this.#size += chunk.length;
    if (this.#size < frameInput) return done();
    this.#emitFrames(false).then(() => done(), done);
  }

  override _flush(done: TransformCallback): void {
    this.#emitFrames(true).then(() => done(), done);
  }

  async #emitFrames(final: boolean): Promise<void> {
    let all = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending, this.#size);
    while (all.length >= frameInput || (final && all.length > 0)) {
      const input = all.subarray(0, frameInput);
      all = all.subarray(input.length);
      this.push(await compressFrame(input, { contentChecksum: true }));
    }
    // An empty payload is still one valid (empty) frame, so the object stays self-describing.
    if (final && this.#size === 0) this.push(await compressFrame(Buffer.alloc(0), { contentChecksum: true }));
    this.#pending = all.length ? [all] : [];
    this.#size = all.length;
  }
}

/** Splits a byte stream at LZ4 frame boundaries, by reading frame and block headers only. */
export class Lz4FrameSplitter {
  #chunks: Buffer[] = [];
  #size = 0;
  /** Offset within the current frame up to which headers have been parsed. */
  #cursor = 0;
  #state: 'header' | 'blocks' = 'header';
  #blockChecksum = false;
  #contentChecksum = false;

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#size += chunk.length;
  }

  /** The next complete frame, or undefined until more bytes arrive. */
  nextFrame(): Buffer | undefined {
    const frameEnd = this.#scan();
    if (frameEnd === undefined) return undefined;
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#size);
    const rest = all.subarray(frameEnd);
    this.#chunks = rest.length ? [rest] : [];
    this.#size = rest.length;
    this.#cursor = 0;
    this.#state = 'header';
    return all.subarray(0, frameEnd);
  }

  /** The input is complete: throws when it ends inside a frame. */
  end(): void {
    if (this.#size > 0) throw new Error('lz4 stream ends in the middle of a frame (truncated object)');
  }

  /** Advance over complete headers and blocks; the frame's end offset once it is all buffered. */
  #scan(): number | undefined {
    if (this.#state === 'header') {
      if (this.#size < 7) return undefined;
      if (this.#u32(0) !== frameMagic) throw new Error('not an lz4 frame (bad magic)');
      const flags = this.#byte(4);
      if (flags >> 6 !== 1) throw new Error('unsupported lz4 frame version');
      this.#blockChecksum = (flags & 0x10) !== 0;
      this.#contentChecksum = (flags & 0x04) !== 0;
      const headerLength = 4 + 2 + (flags & 0x08 ? 8 : 0) + (flags & 0x01 ? 4 : 0) + 1;
      if (this.#size < headerLength) return undefined;
      this.#cursor = headerLength;
      this.#state = 'blocks';
    }
    for (;;) {
      if (this.#size < this.#cursor + 4) return undefined;
      const word = this.#u32(this.#cursor);
      if (word === 0) {
        const end = this.#cursor + 4 + (this.#contentChecksum ? 4 : 0);
        return this.#size >= end ? end : undefined;
      }
      const next = this.#cursor + 4 + (word & 0x7fffffff) + (this.#blockChecksum ? 4 : 0);
      if (this.#size < next) return undefined;
      this.#cursor = next;
    }
  }

  #byte(offset: number): number {
    for (const chunk of this.#chunks) {
      if (offset < chunk.length) return chunk[offset]!;
      offset -= chunk.length;
    }
    throw new RangeError('offset past buffered data');
  }

  #u32(offset: number): number {
    return (this.#byte(offset) | (this.#byte(offset + 1) << 8) | (this.#byte(offset + 2) << 16) | (this.#byte(offset + 3) << 24)) >>> 0;
  }
}

/** Decodes a series of LZ4 frames, one frame at a time on lz4-napi's threads. */
export class Lz4FrameDecoder extends Transform {
  readonly #frames = new Lz4FrameSplitter();

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.#frames.push(chunk);
    this.#drain().then(() => done(), done);
  }

  override _flush(done: TransformCallback): void {
    try {
      this.#frames.end();
    } catch (err) {
      return done(err as Error);
    }
    done();
  }

  async #drain(): Promise<void> {
    for (let frame = this.#frames.nextFrame(); frame; frame = this.#frames.nextFrame()) {
      const out = await decompressFrame(frame);
      if (out.length) this.push(out);
    }
  }
}
