/**
 * Synchronous, push-style decompression of an (already decrypted) object, for code that runs in
 * a worker thread at memory speed: zstd decodes straight into the caller's buffers (no allocation
 * per chunk); lz4 decodes whole frames. The Transform streams in codec.ts remain the general path.
 */
import { createRequire } from 'node:module';
import { releaseBuffer } from '../buffers.ts';
import { sniff } from './codec.ts';
import { Lz4FrameSplitter } from './lz4-frames.ts';

const requireNative = createRequire(import.meta.url);

export interface PayloadDecoder {
  /**
   * The next input bytes; give them only after next() returned undefined. The decoder takes them
   * over: it frees them (releaseBuffer) once decoded, unless they come back as output.
   */
  push(input: Buffer): void;
  /**
   * The next decoded bytes, either in `scratch` (a subarray of it) or in a buffer the caller then
   * owns; undefined when it needs more input.
   */
  next(scratch: Buffer): Buffer | undefined;
  /** The input is complete: throws when it ended inside a frame. */
  end(): void;
}

export interface DecoderOptions {
  /**
   * The caller checks every decoded byte itself (backup-fetch: each file's SHA-256), so zstd's own
   * content checksum is not verified: computing it was a quarter of zstd's decoding time (a 1 GiB
   * part: 295 -> 216 ms).
   */
  contentVerifiedByCaller?: boolean;
}

/** A decoder for the compression these first bytes announce (at least 4 bytes, unless the object is shorter). */
export function payloadDecoder(head: Buffer, options: DecoderOptions = {}): PayloadDecoder {
  const kind = sniff(head);
  if (kind === 'age') throw new Error('object is encrypted twice');
  if (kind === 'zstd') return new ZstdDecoder(options.contentVerifiedByCaller ?? false);
  if (kind === 'lz4') return new Lz4Decoder();
  return new PlainDecoder();
}

interface ZstdDCtx {
  decompressStream(dst: Uint8Array, src: Uint8Array): [ret: number, produced: number, consumed: number];
  setParameter(param: number, value: number): void;
}

/** ZSTD_d_forceIgnoreChecksum (zstd.h, experimental since 1.4.7): zstd-napi passes parameters through by number. */
const zstdIgnoreChecksumParameter = 1002;

class ZstdDecoder implements PayloadDecoder {
  readonly #dctx: ZstdDCtx;
  #pushed: Buffer | undefined;
  #input: Buffer = Buffer.alloc(0);
  /** zstd holds more output than the last call had room for. */
  #pendingOutput = false;
  #inFrame = false;

  constructor(ignoreChecksum: boolean) {
    const binding = requireNative('zstd-napi/binding') as { DCtx: new () => ZstdDCtx };
    this.#dctx = new binding.DCtx();
    if (ignoreChecksum) this.#dctx.setParameter(zstdIgnoreChecksumParameter, 1);
  }

  push(input: Buffer): void {
    this.#pushed = input;
    this.#input = input;
  }

  next(scratch: Buffer): Buffer | undefined {
    while (this.#input.length > 0 || this.#pendingOutput) {
      const [ret, produced, consumed] = this.#dctx.decompressStream(scratch, this.#input);
      this.#pendingOutput = produced === scratch.length;
      // A call that moved nothing says nothing of the frame: after a frame's end, it announces the next header.
      if (produced === 0 && consumed === 0) {
        if (this.#input.length > 0) throw new Error('zstd made no progress');
        break;
      }
      this.#input = this.#input.subarray(consumed);
      this.#inFrame = ret !== 0;
      if (produced > 0) return scratch.subarray(0, produced);
    }
    // All of it decoded: zstd keeps what it still needs (its window) in its own memory.
    if (this.#pushed) releaseBuffer(this.#pushed);
    this.#pushed = undefined;
    return undefined;
  }

  end(): void {
    if (this.#inFrame) throw new Error('zstd stream ends in the middle of a frame (truncated object)');
  }
}

class Lz4Decoder implements PayloadDecoder {
  readonly #frames = new Lz4FrameSplitter(releaseBuffer);
  readonly #decompress = (requireNative('lz4-napi') as typeof import('lz4-napi')).decompressFrameSync;

  push(input: Buffer): void {
    this.#frames.push(input);
  }

  next(): Buffer | undefined {
    for (let frame = this.#frames.nextFrame(); frame; frame = this.#frames.nextFrame()) {
      const out = this.#decompress(frame);
      if (out.length > 0) return out;
    }
    return undefined;
  }

  end(): void {
    this.#frames.end();
  }
}

class PlainDecoder implements PayloadDecoder {
  #input: Buffer | undefined;

  push(input: Buffer): void {
    this.#input = input;
  }

  next(): Buffer | undefined {
    const out = this.#input;
    this.#input = undefined;
    return out?.length ? out : undefined;
  }

  end(): void {}
}
