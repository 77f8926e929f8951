/**
 * lz4 frames compressed on worker threads of walship's own, for long streams (backup parts).
 * lz4-napi's asynchronous calls run on libuv's thread pool and hand back memory its bundled
 * allocator (mimalloc) gives out there; freed from the main thread, that memory stayed with the
 * pool threads, and an lz4 backup-push grew by about one stored part (~170 MiB). Here each frame
 * is made and freed on one thread (lz4-worker.ts). A worker costs ~20 ms to start, so wal-push
 * keeps the thread pool.
 */
import { Worker } from 'node:worker_threads';
import { ownsMemory } from '../buffers.ts';
import { workerUrl } from '../worker-url.ts';
import { lz4FrameOptions, type Lz4FrameCompressor } from './lz4-frames.ts';

/** What the worker threads are told at start (workerData). */
export interface Lz4WorkerSetup {
  frameOptions: { contentChecksum: boolean };
}

export interface ToLz4Worker {
  id: number;
  /** Lent to the worker (moved) and given back with the frame. */
  input: ArrayBuffer;
  length: number;
}
export interface FromLz4Worker {
  id: number;
  input: ArrayBuffer;
  frame?: Uint8Array;
  error?: string;
}

interface Job {
  resolve: (result: { frame: Buffer; stage: Buffer }) => void;
  reject: (err: Error) => void;
}

export class Lz4FrameThreads {
  readonly #workers: { worker: Worker; jobs: Map<number, Job> }[];
  #nextId = 0;

  /** `frameOptions`: walship's usual frames unless told otherwise. */
  constructor(count: number, frameOptions: Lz4WorkerSetup['frameOptions'] = lz4FrameOptions) {
    const workerData: Lz4WorkerSetup = { frameOptions };
    this.#workers = Array.from({ length: Math.max(1, count) }, () => {
      const entry = { worker: new Worker(workerUrl('lz4-worker', import.meta.url), { workerData }), jobs: new Map<number, Job>() };
      entry.worker.on('message', ({ id, input, frame, error }: FromLz4Worker) => {
        const job = entry.jobs.get(id);
        entry.jobs.delete(id);
        if (entry.jobs.size === 0) entry.worker.unref();
        if (!job) return;
        if (frame) job.resolve({ frame: Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength), stage: Buffer.from(input) });
        else job.reject(new Error(`lz4 compression failed: ${error}`));
      });
      const failAll = (err: Error) => {
        for (const job of entry.jobs.values()) job.reject(err);
        entry.jobs.clear();
      };
      entry.worker.on('error', failAll);
      entry.worker.on('exit', (code) => failAll(new Error(`an lz4 worker thread exited (code ${code})`)));
      // An idle worker does not keep the process alive (one with a job does).
      entry.worker.unref();
      return entry;
    });
  }

  /** For Lz4FrameEncoder: the least busy worker compresses the frame. */
  readonly compress: Lz4FrameCompressor = (stage, length) => {
    const entry = this.#workers.reduce((a, b) => (b.jobs.size < a.jobs.size ? b : a));
    const id = this.#nextId++;
    if (!ownsMemory(stage)) throw new Error('an lz4 stage buffer must own its memory');
    const input = stage.buffer as ArrayBuffer;
    return new Promise((resolve, reject) => {
      entry.jobs.set(id, { resolve, reject });
      entry.worker.ref();
      entry.worker.postMessage({ id, input, length } satisfies ToLz4Worker, [input]);
    });
  };

  async close(): Promise<void> {
    await Promise.all(this.#workers.map(({ worker }) => worker.terminate()));
  }
}
