import { open, type FileHandle } from 'node:fs/promises';

/**
 * Write a stream into an open file handle. (A fs.WriteStream over a FileHandle with autoClose off
 * makes the handle's close() wait forever, and we need to fsync before closing.)
 */
export async function writeAll(handle: FileHandle, source: AsyncIterable<Buffer>): Promise<number> {
  let size = 0;
  for await (const chunk of source) {
    await handle.write(chunk);
    size += chunk.length;
  }
  return size;
}

/** fsync a directory, making renames and links in it durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
