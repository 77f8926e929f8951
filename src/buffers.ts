/**
 * Gives a Buffer's memory back now rather than at V8's next collection. Native calls (a cipher's
 * update, lz4-napi) return each result in fresh memory that lives until a GC, so a loop over
 * many of them touches new pages all the way: on this VM those page faults cost more than the
 * cipher (a 16 MiB segment sealed in ~8 ms instead of ~4), and lz4-napi's memory, which V8 does
 * not count, piles up. Detaching frees the memory at once (lz4-napi's on the next turn of the
 * event loop) and the next result reuses it. Only for buffers that own their whole ArrayBuffer
 * (never a slice of Node's shared pool) and that nothing reads afterwards.
 */
export function releaseBuffer(buf: Buffer): void {
  const backing = buf.buffer;
  if (backing instanceof ArrayBuffer && !backing.detached && ownsMemory(buf)) backing.transfer(0);
}

/** True when `buf` spans its whole ArrayBuffer, so it can be transferred to another thread or released. */
export function ownsMemory(buf: Buffer): boolean {
  return buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength;
}
