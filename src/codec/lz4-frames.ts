import { Transform, type TransformCallback } from 'node:stream';
import { compressFrame, decompressFrame } from 'lz4-napi';

/**
 * lz4 objects are a series of independent LZ4 frames of at most `frameInput` bytes of payload:
 * lz4-napi decodes small frames several times faster than one large frame, and the `lz4` CLI
 * reads concatenated frames as one stream (DESIGN §5). Work runs on lz4-napi's own threads.
 */
const frameInput = 4 * 1024 * 1024;
const frameMagic = 0x184d2204;
/** Frames of one stream compressed at once on the thread pool (while the next one fills). */
const framesInFlight = 2;

export class Lz4FrameEncoder extends Transform {
  /**
   * Frame payloads are gathered in a few buffers reused for the whole stream (a new 4 MiB buffer
   * per frame kept V8's collector busy): one fills while the others' frames compress on the
   * thread pool, and frames are pushed in order.
   */
  readonly #stages = Array.from({ length: framesInFlight + 1 }, () => Buffer.allocUnsafeSlow(frameInput));
  #current = 0;
  #staged = 0;
  #compressing: Promise<Buffer>[] = [];
  #frames = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.#staged + chunk.length < frameInput) {
      chunk.copy(this.#stages[this.#current]!, this.#staged);
      this.#staged += chunk.length;
      return done();
    }
    this.#consume(chunk).then(() => done(), done);
  }

  override _flush(done: TransformCallback): void {
    // An empty payload is still one valid (empty) frame, so the object stays self-describing.
    const last = this.#staged > 0 || this.#frames === 0 ? this.#startFrame() : Promise.resolve();
    last.then(() => this.#pushDone(0)).then(() => done(), done);
  }

  async #consume(chunk: Buffer): Promise<void> {
    for (let at = 0; at < chunk.length; ) {
      const take = Math.min(frameInput - this.#staged, chunk.length - at);
      chunk.copy(this.#stages[this.#current]!, this.#staged, at, at + take);
      this.#staged += take;
      at += take;
      if (this.#staged === frameInput) await this.#startFrame();
    }
  }

  /** Compress the current stage; wait, if need be, until the next stage's earlier frame is done. */
  async #startFrame(): Promise<void> {
    const frame = compressFrame(this.#stages[this.#current]!.subarray(0, this.#staged), { contentChecksum: true });
    frame.catch(() => {}); // awaited in order by #pushDone; not an unhandled rejection meanwhile
    this.#compressing.push(frame);
    this.#frames++;
    this.#staged = 0;
    this.#current = (this.#current + 1) % this.#stages.length;
    await this.#pushDone(framesInFlight);
  }

  /** Push finished frames, oldest first, until at most `keep` are still compressing. */
  async #pushDone(keep: number): Promise<void> {
    while (this.#compressing.length > keep) this.push(await this.#compressing.shift()!);
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

  /** Copies the start of a frame still waiting for its end, so no view of the chunks pushed so far is kept. */
  compact(): void {
    if (this.#size > 0) this.#chunks = [Buffer.concat(this.#chunks, this.#size)];
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
