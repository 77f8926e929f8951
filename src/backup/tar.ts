/**
 * Minimal POSIX tar (ustar + pax extended headers) writer for base backup parts. Parts are read
 * back with tar-stream, and by plain `tar -x` when walship itself is not at hand.
 */
export const blockSize = 512;
/** Two zero blocks end an archive. */
export const endOfArchive = Buffer.alloc(blockSize * 2);

export interface TarHeader {
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'pax';
  size: number;
  mode: number;
  mtime: number;
  uid?: number;
  gid?: number;
  linkname?: string;
}

const typeFlags = { file: '0', dir: '5', symlink: '2', pax: 'x' } as const;
const maxOctal = (digits: number) => 8 ** digits - 1;

function writeString(block: Buffer, offset: number, length: number, value: string): void {
  block.write(value, offset, length, 'utf8');
}

function writeOctal(block: Buffer, offset: number, length: number, value: number): void {
  // length-1 octal digits and a NUL terminator.
  block.write(value.toString(8).padStart(length - 1, '0'), offset, length - 1, 'ascii');
  block[offset + length - 1] = 0;
}

/** One pax record: "<len> key=value\n", where len counts the whole record including itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = Buffer.byteLength(body) + 1;
  while (String(length).length + Buffer.byteLength(body) !== length) length = String(length).length + Buffer.byteLength(body);
  return `${length}${body}`;
}

function ustarBlock(header: TarHeader): Buffer {
  const block = Buffer.alloc(blockSize);
  writeString(block, 0, 100, header.name);
  writeOctal(block, 100, 8, header.mode & 0o7777);
  writeOctal(block, 108, 8, Math.min(header.uid ?? 0, maxOctal(7)));
  writeOctal(block, 116, 8, Math.min(header.gid ?? 0, maxOctal(7)));
  writeOctal(block, 124, 12, header.size);
  writeOctal(block, 136, 12, Math.max(0, Math.min(header.mtime, maxOctal(11))));
  block.fill(0x20, 148, 156); // checksum counted as spaces
  writeString(block, 156, 1, typeFlags[header.type]);
  if (header.linkname) writeString(block, 157, 100, header.linkname);
  writeString(block, 257, 6, 'ustar\0');
  writeString(block, 263, 2, '00');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return block;
}

const fitsUstar = (text: string) => Buffer.byteLength(text) <= 100 && /^[\x20-\x7e]*$/.test(text);

/** Header block(s) for one entry: a pax header first when the name, link or size does not fit ustar. */
export function tarHeader(header: TarHeader): Buffer {
  const name = header.type === 'dir' && !header.name.endsWith('/') ? `${header.name}/` : header.name;
  const records: string[] = [];
  if (!fitsUstar(name)) records.push(paxRecord('path', name));
  if (header.linkname !== undefined && !fitsUstar(header.linkname)) records.push(paxRecord('linkpath', header.linkname));
  if (header.size > maxOctal(11)) records.push(paxRecord('size', String(header.size)));
  const main = ustarBlock({
    ...header,
    name: fitsUstar(name) ? name : asciiPrefix(name),
    linkname: header.linkname === undefined || fitsUstar(header.linkname) ? header.linkname : asciiPrefix(header.linkname),
    size: header.size > maxOctal(11) ? 0 : header.size,
  });
  if (records.length === 0) return main;
  const pax = Buffer.from(records.join(''));
  return Buffer.concat([
    ustarBlock({ name: asciiPrefix(`PaxHeaders/${name}`), type: 'pax', size: pax.length, mode: 0o644, mtime: header.mtime }),
    pax,
    padding(pax.length),
    main,
  ]);
}

/** A ustar fallback name for readers without pax support: printable ASCII, at most 100 bytes. */
const asciiPrefix = (text: string) => text.replace(/[^\x20-\x7e]/g, '_').slice(0, 100);

/** Zero bytes that complete `size` bytes of content to a whole block. */
export function padding(size: number): Buffer {
  const rest = size % blockSize;
  return rest === 0 ? Buffer.alloc(0) : Buffer.alloc(blockSize - rest);
}
