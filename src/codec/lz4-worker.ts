/**
 * A worker thread that compresses lz4 frames for Lz4FrameThreads (lz4-threads.ts). Each frame is
 * made and freed on this one thread, so lz4-napi's allocator reuses its memory; the frame goes back
 * as a copy in memory V8 counts, moved, with the input buffer the caller lent.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { compressFrameSync } from 'lz4-napi';
import { releaseBuffer } from '../buffers.ts';
import type { FromLz4Worker, Lz4WorkerSetup, ToLz4Worker } from './lz4-threads.ts';

const port = parentPort!;
const { frameOptions } = workerData as Lz4WorkerSetup;

port.on('message', ({ id, input, length }: ToLz4Worker) => {
  let reply: FromLz4Worker;
  try {
    const native = compressFrameSync(Buffer.from(input, 0, length), frameOptions);
    const frame = new Uint8Array(native.length);
    frame.set(native);
    releaseBuffer(native);
    reply = { id, input, frame };
  } catch (err) {
    reply = { id, input, error: (err as Error).message };
  }
  port.postMessage(reply, reply.frame ? [input, reply.frame.buffer as ArrayBuffer] : [input]);
});
