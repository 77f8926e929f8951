/** Pieces of a pg_dump custom-format archive header, for tests that need one without pg_dump. */

/** pg_dump's integer: a sign byte, then the magnitude in 4 little-endian bytes (the header says so). */
export function int(value: number): Buffer {
  const b = Buffer.alloc(5);
  b[0] = value < 0 ? 1 : 0;
  b.writeUInt32LE(Math.abs(value), 1);
  return b;
}

/** pg_dump's string: its length in bytes as an int, then the bytes. */
export const str = (s: string) => Buffer.concat([int(Buffer.byteLength(s)), Buffer.from(s)]);
