/**
 * A fetch worker's hashing thread (see ThreadHashes in hashes.ts): SHA-256 of file content that
 * the fetch worker decoded into shared memory, so hashing runs beside decoding and writing
 * instead of after them. Messages are handled in order: a file's digest covers all its updates.
 */
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import type { FromHashWorker, ToHashWorker } from './hashes.ts';

const port = parentPort!;
const hashes = new Map<number, Hash>();
const send = (message: FromHashWorker) => port.postMessage(message);

port.on('message', (m: ToHashWorker) => {
  if (m.type === 'start') hashes.set(m.file, createHash('sha256'));
  else if (m.type === 'update') {
    hashes.get(m.file)!.update(new Uint8Array(m.memory, m.offset, m.length));
    send({ type: 'updated', token: m.token });
  } else {
    send({ type: 'digest', file: m.file, digest: hashes.get(m.file)!.digest('hex') });
    hashes.delete(m.file);
  }
});
