/**
 * Minimal POSIX tar (ustar + pax extended headers) writer and reader for base backup parts. Parts
 * also read with plain `tar -x` when walship itself is not at hand.
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

/** One entry as the reader sees it: pax records already applied. */
export interface TarEntry {
  name: string;
  /** 'file', 'directory', 'symlink', 'link', 'fifo', ..., or `type <flag>` for an unknown flag. */
  type: string;
  size: number;
  linkname: string;
}

export interface TarVisitor {
  entry(header: TarEntry): void;
  /** Content of the current entry, in order; `chunk` is only valid during the call. */
  data(chunk: Buffer): void;
  entryEnd(): void;
}

const typeNames: Record<string, string> = {
  '0': 'file',
  '\0': 'file',
  '1': 'link',
  '2': 'symlink',
  '3': 'character-device',
  '4': 'block-device',
  '5': 'directory',
  '6': 'fifo',
  '7': 'contiguous-file',
  g: 'pax-global-header',
  L: 'gnu-long-path',
  K: 'gnu-long-link-path',
};

/**
 * A push parser for the tar parts walship writes (ustar with pax `path`, `linkpath` and `size`
 * records): synchronous, no copies of entry content, so extraction can run at memory speed in a
 * worker thread. Anything malformed throws.
 */
export class TarReader {
  readonly #visitor: TarVisitor;
  /** Header (or pax record) bytes gathered across chunks. */
  #pending: Buffer[] = [];
  #pendingSize = 0;
  #state: 'header' | 'data' | 'pax' | 'padding' | 'ended' = 'header';
  /** Bytes left in the current data, pax body or padding. */
  #left = 0;
  #afterData = 0;
  #pax: Record<string, string> = {};

  constructor(visitor: TarVisitor) {
    this.#visitor = visitor;
  }

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && this.#state !== 'ended') {
      if (this.#state === 'data') {
        const take = Math.min(this.#left, chunk.length - at);
        this.#visitor.data(chunk.subarray(at, at + take));
        at += take;
        this.#left -= take;
        if (this.#left === 0) this.#endData();
      } else if (this.#state === 'padding') {
        const take = Math.min(this.#left, chunk.length - at);
        at += take;
        this.#left -= take;
        if (this.#left === 0) this.#state = 'header';
      } else {
        const need = this.#state === 'header' ? blockSize : this.#left;
        const take = Math.min(need - this.#pendingSize, chunk.length - at);
        // A copy: the caller may reuse `chunk` once this call returns.
        this.#pending.push(Buffer.from(chunk.subarray(at, at + take)));
        this.#pendingSize += take;
        at += take;
        if (this.#pendingSize < need) return;
        const bytes = Buffer.concat(this.#pending, this.#pendingSize);
        this.#pending = [];
        this.#pendingSize = 0;
        if (this.#state === 'header') this.#header(bytes);
        else this.#paxBody(bytes);
      }
    }
  }

  /** The input is complete: throws unless the archive ended properly. */
  end(): void {
    if (this.#state !== 'ended') throw new Error('truncated tar archive (no end-of-archive marker)');
  }

  #header(block: Buffer): void {
    if (block.every((b) => b === 0)) {
      // One zero block ends the archive (GNU tar writes two and may pad further): what follows is ignored.
      this.#state = 'ended';
      return;
    }
    let sum = 0;
    for (let i = 0; i < blockSize; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
    if (octal(block, 148, 8) !== sum) throw new Error('invalid tar header (checksum mismatch)');
    const flag = String.fromCharCode(block[156]!);
    const size = octal(block, 124, 12);
    if (flag === 'x') {
      this.#state = 'pax';
      this.#left = size;
      this.#afterData = padded(size) - size;
      if (size === 0) this.#paxBody(Buffer.alloc(0));
      return;
    }
    // POSIX ustar ("ustar\0") may split a long name into prefix/name; GNU tar's "ustar  " keeps
    // other fields there.
    let name = text(block, 0, 100);
    if (block.toString('latin1', 257, 263) === 'ustar\0' && block[345] !== 0) name = `${text(block, 345, 155)}/${name}`;
    const pax = this.#pax;
    this.#pax = {};
    const entry: TarEntry = {
      name: pax.path ?? name,
      type: typeNames[flag] ?? `type ${JSON.stringify(flag)}`,
      size: pax.size !== undefined ? Number(pax.size) : size,
      linkname: pax.linkpath ?? text(block, 157, 100),
    };
    if (!Number.isSafeInteger(entry.size) || entry.size < 0) throw new Error(`invalid size for ${JSON.stringify(entry.name)}`);
    this.#visitor.entry(entry);
    this.#left = entry.size;
    this.#afterData = padded(entry.size) - entry.size;
    this.#state = 'data';
    if (entry.size === 0) this.#endData();
  }

  #endData(): void {
    this.#visitor.entryEnd();
    this.#left = this.#afterData;
    this.#state = this.#left > 0 ? 'padding' : 'header';
  }

  #paxBody(bytes: Buffer): void {
    // Records: "<length> <key>=<value>\n", the length counting the whole record.
    let at = 0;
    while (at < bytes.length) {
      const space = bytes.indexOf(0x20, at);
      const length = Number(bytes.toString('latin1', at, space));
      if (space < 0 || !Number.isSafeInteger(length) || length <= space - at || at + length > bytes.length) throw new Error('invalid pax header');
      const record = bytes.toString('utf8', space + 1, at + length - 1);
      const eq = record.indexOf('=');
      if (eq < 0) throw new Error('invalid pax record');
      this.#pax[record.slice(0, eq)] = record.slice(eq + 1);
      at += length;
    }
    this.#left = this.#afterData;
    this.#state = this.#left > 0 ? 'padding' : 'header';
  }
}

const padded = (size: number) => Math.ceil(size / blockSize) * blockSize;

function text(block: Buffer, offset: number, length: number): string {
  const field = block.subarray(offset, offset + length);
  const nul = field.indexOf(0);
  return field.toString('utf8', 0, nul < 0 ? length : nul);
}

function octal(block: Buffer, offset: number, length: number): number {
  const field = text(block, offset, length).trim();
  if (!/^[0-7]*$/.test(field)) throw new Error('invalid tar header (bad number)');
  return field === '' ? 0 : parseInt(field, 8);
}
