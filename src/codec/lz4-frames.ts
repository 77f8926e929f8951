import { Transform, type TransformCallback } from 'node:stream';
import { compressFrame, decompressFrame } from 'lz4-napi';

/**
 * lz4 objects are a series of independent LZ4 frames of at most `frameInput` bytes of payload:
 * lz4-napi decodes small frames several times faster than one large frame, and the `lz4` CLI
 * reads concatenated frames as one stream (DESIGN §5). Work runs on lz4-napi's own threads.
 */
const frameInput = 4 * 1024 * 1024;
const frameMagic = 0x184d2204;
/** Frames of one stream compressed at once (while the next one fills), unless told otherwise. */
const defaultFramesInFlight = 2;

/**
 * Compresses `stage[0, length)` into one frame (lz4FrameOptions, unless the compressor was made
 * with others). The stage may be moved away meanwhile; it comes back with the frame.
 */
export type Lz4FrameCompressor = (stage: Buffer, length: number) => Promise<{ frame: Buffer; stage: Buffer }>;

/** How every walship lz4 frame is made, wherever it is made (the CLI's default; content checksum on). */
export const lz4FrameOptions = { contentChecksum: true };

/** On libuv's thread pool: no start-up cost, for short streams (a WAL segment). */
const onThreadPool: Lz4FrameCompressor = async (stage, length) => ({ frame: await compressFrame(stage.subarray(0, length), lz4FrameOptions), stage });

export interface Lz4EncoderOptions {
  /** Where frames are made: libuv's thread pool by default; Lz4FrameThreads for long streams. */
  compress?: Lz4FrameCompressor | undefined;
  /** Told of each written chunk once it is copied into a frame's input, so its owner may free it. */
  copied?: ((chunk: Buffer) => void) | undefined;
  /** Frames compressed at once (default 2); 1 when several streams run side by side. */
  framesInFlight?: number | undefined;
}

export class Lz4FrameEncoder extends Transform {
  /**
   * Frame payloads are gathered in a few buffers reused for the whole stream (a new 4 MiB buffer
   * per frame kept V8's collector busy): one fills while the others' frames compress, and frames
   * are pushed in order.
   */
  readonly #stages: Buffer[];
  #current = 0;
  #staged = 0;
  #compressing: { slot: number; done: Promise<{ frame: Buffer; stage: Buffer }> }[] = [];
  #frames = 0;
  readonly #compress: Lz4FrameCompressor;
  readonly #copied: ((chunk: Buffer) => void) | undefined;
  readonly #framesInFlight: number;

  constructor(options: Lz4EncoderOptions = {}) {
    super();
    this.#compress = options.compress ?? onThreadPool;
    this.#copied = options.copied;
    this.#framesInFlight = Math.max(1, options.framesInFlight ?? defaultFramesInFlight);
    this.#stages = Array.from({ length: this.#framesInFlight + 1 }, () => Buffer.allocUnsafeSlow(frameInput));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.#staged + chunk.length < frameInput) {
      chunk.copy(this.#stages[this.#current]!, this.#staged);
      this.#staged += chunk.length;
      this.#copied?.(chunk);
      return done();
    }
    this.#consume(chunk).then(() => {
      this.#copied?.(chunk);
      done();
    }, done);
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

  /**
   * Compress the current stage; wait, if need be, until the next stage's earlier frame is done
   * (and its buffer is back).
   */
  async #startFrame(): Promise<void> {
    const slot = this.#current;
    const done = this.#compress(this.#stages[slot]!, this.#staged);
    done.catch(() => {}); // awaited in order by #pushDone; not an unhandled rejection meanwhile
    this.#compressing.push({ slot, done });
    this.#frames++;
    this.#staged = 0;
    this.#current = (slot + 1) % this.#stages.length;
    await this.#pushDone(this.#framesInFlight);
  }

  /** Push finished frames, oldest first, until at most `keep` are still compressing. */
  async #pushDone(keep: number): Promise<void> {
    while (this.#compressing.length > keep) {
      const { slot, done } = this.#compressing.shift()!;
      const { frame, stage } = await done;
      this.#stages[slot] = stage;
      this.push(frame);
    }
  }
}

/**
 * Splits a byte stream at LZ4 frame boundaries, by reading frame and block headers only. A frame
 * within one chunk is returned as a view of it; one that spans chunks is assembled in a buffer
 * reused for every such frame, so nothing else is copied. A frame is valid until the next call.
 */
export class Lz4FrameSplitter {
  /** Unread bytes: each chunk as pushed, from `start` on. */
  #chunks: { whole: Buffer; start: number }[] = [];
  #size = 0;
  /** Offset within the current frame up to which headers have been parsed. */
  #cursor = 0;
  #state: 'header' | 'blocks' = 'header';
  #blockChecksum = false;
  #contentChecksum = false;
  #assembly = Buffer.alloc(0);
  /** Chunks read to their end, given to `onConsumed` at the next call (the last frame may still be a view of them). */
  #consumed: Buffer[] = [];
  readonly #onConsumed: ((chunk: Buffer) => void) | undefined;

  /** `onConsumed` receives each pushed chunk once no frame needs it any more. */
  constructor(onConsumed?: (chunk: Buffer) => void) {
    this.#onConsumed = onConsumed;
  }

  push(chunk: Buffer): void {
    this.#chunks.push({ whole: chunk, start: 0 });
    this.#size += chunk.length;
  }

  /** The next complete frame, or undefined until more bytes arrive. */
  nextFrame(): Buffer | undefined {
    for (const chunk of this.#consumed.splice(0)) this.#onConsumed?.(chunk);
    const frameEnd = this.#scan();
    if (frameEnd === undefined) return undefined;
    const first = this.#chunks[0]!;
    let frame: Buffer;
    if (first.whole.length - first.start >= frameEnd) {
      frame = first.whole.subarray(first.start, first.start + frameEnd);
      this.#advance(frameEnd);
    } else {
      if (this.#assembly.length < frameEnd) this.#assembly = Buffer.allocUnsafeSlow(frameEnd);
      for (let filled = 0; filled < frameEnd; ) {
        const { whole, start } = this.#chunks[0]!;
        const take = Math.min(whole.length - start, frameEnd - filled);
        whole.copy(this.#assembly, filled, start, start + take);
        filled += take;
        this.#advance(take);
      }
      frame = this.#assembly.subarray(0, frameEnd);
    }
    this.#cursor = 0;
    this.#state = 'header';
    return frame;
  }

  /** The input is complete: throws when it ends inside a frame. */
  end(): void {
    for (const chunk of this.#consumed.splice(0)) this.#onConsumed?.(chunk);
    if (this.#size > 0) throw new Error('lz4 stream ends in the middle of a frame (truncated object)');
  }

  /** Drop `bytes` from the front of the first chunk. */
  #advance(bytes: number): void {
    const first = this.#chunks[0]!;
    first.start += bytes;
    this.#size -= bytes;
    if (first.start === first.whole.length) this.#consumed.push(this.#chunks.shift()!.whole);
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
    for (const { whole, start } of this.#chunks) {
      if (offset < whole.length - start) return whole[start + offset]!;
      offset -= whole.length - start;
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
