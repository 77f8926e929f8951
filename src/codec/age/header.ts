/**
 * The age v1 header (https://age-encryption.org/v1):
 *
 *   age-encryption.org/v1\n
 *   -> TYPE ARG...\n          one line per stanza, then its body as base64
 *   BODY (64 columns)\n       lines of exactly 64 characters, ending with a
 *   BODY (< 64 columns)\n     shorter (possibly empty) line
 *   --- MAC\n                 HMAC-SHA256 over everything up to and including "---"
 */
import crypto from 'node:crypto';
import { integrityError } from '../../errors.ts';
import { b64decode, b64encode, isB64Line } from './base64.ts';

export const VERSION_LINE = 'age-encryption.org/v1';
export const MAGIC = Buffer.from(`${VERSION_LINE}\n`, 'latin1');
/** A header this large is not something walship (or any age tool) wrote. */
export const MAX_HEADER_BYTES = 1 << 20;

export interface Stanza {
  readonly type: string;
  readonly args: readonly string[];
  readonly body: Buffer;
}

export interface ParsedHeader {
  readonly stanzas: Stanza[];
  /** The header bytes the MAC covers: from the version line to "---" inclusive. */
  readonly macInput: Buffer;
  readonly mac: Buffer;
}

const COLUMNS = 64;
/** An argument (and the stanza type) is one or more VCHARs: printable ASCII, no space. */
const ARG = /^[\x21-\x7e]+$/;

export function hkdf(ikm: Uint8Array, salt: Uint8Array, info: string, length = 32): Buffer {
  return Buffer.from(crypto.hkdfSync('sha256', ikm, salt, info, length));
}

function headerMac(fileKey: Uint8Array, macInput: Uint8Array): Buffer {
  const key = hkdf(fileKey, Buffer.alloc(0), 'header');
  const mac = crypto.createHmac('sha256', key).update(macInput).digest();
  key.fill(0);
  return mac;
}

export function serializeStanza(stanza: Stanza): string {
  for (const arg of [stanza.type, ...stanza.args]) {
    if (!ARG.test(arg)) throw new Error('age: invalid stanza argument');
  }
  let out = `-> ${[stanza.type, ...stanza.args].join(' ')}\n`;
  const body = b64encode(stanza.body);
  for (let i = 0; i < body.length; i += COLUMNS) out += `${body.slice(i, i + COLUMNS)}\n`;
  // The body always ends with a line shorter than 64 columns, so a body whose
  // encoding is a multiple of 64 characters (including empty) gets an empty line.
  if (body.length % COLUMNS === 0) out += '\n';
  return out;
}

/** The whole header, MAC line included, for the given stanzas and file key. */
export function serializeHeader(stanzas: readonly Stanza[], fileKey: Uint8Array): Buffer {
  let text = `${VERSION_LINE}\n`;
  for (const s of stanzas) text += serializeStanza(s);
  text += '---';
  const macInput = Buffer.from(text, 'latin1');
  const mac = headerMac(fileKey, macInput);
  return Buffer.concat([macInput, Buffer.from(` ${b64encode(mac)}\n`, 'latin1')]);
}

export function verifyHeaderMac(header: ParsedHeader, fileKey: Uint8Array): boolean {
  const expected = headerMac(fileKey, header.macInput);
  return expected.length === header.mac.length && crypto.timingSafeEqual(expected, header.mac);
}

const malformed = (why: string) => integrityError(`age header is malformed: ${why}`);

/** Parses a complete header (`bytes` ends with the MAC line's newline). Throws integrity errors. */
export function parseHeader(bytes: Buffer): ParsedHeader {
  const text = bytes.toString('latin1');
  const lines = text.split('\n');
  // The split leaves an empty string after the final newline.
  lines.pop();
  if (lines[0] !== VERSION_LINE) throw malformed('unknown version line');
  const stanzas: Stanza[] = [];
  let i = 1;
  for (;;) {
    const line = lines[i];
    if (line === undefined) throw malformed('missing MAC line');
    if (line.startsWith('---')) break;
    if (!line.startsWith('-> ')) throw malformed(`unexpected line ${i + 1}`);
    const words = line.slice(3).split(' ');
    for (const w of words) if (!ARG.test(w)) throw malformed(`bad stanza argument on line ${i + 1}`);
    const [type, ...args] = words as [string, ...string[]];
    i++;
    let body = '';
    for (;;) {
      const bodyLine = lines[i];
      if (bodyLine === undefined) throw malformed('stanza body runs into the end of the header');
      if (bodyLine.length > COLUMNS || !isB64Line(bodyLine)) throw malformed(`bad stanza body on line ${i + 1}`);
      body += bodyLine;
      i++;
      if (bodyLine.length < COLUMNS) break;
    }
    const decoded = b64decode(body);
    if (decoded === null) throw malformed(`non-canonical base64 in stanza ending on line ${i}`);
    stanzas.push({ type, args, body: decoded });
  }
  const macLine = lines[i] as string;
  if (i !== lines.length - 1) throw malformed('data after the MAC line');
  if (!macLine.startsWith('--- ')) throw malformed('bad MAC line');
  const mac = b64decode(macLine.slice(4));
  if (mac === null || mac.length !== 32) throw malformed('bad MAC encoding');
  const macEnd = bytes.length - (macLine.length + 1) + 3;
  return { stanzas, macInput: bytes.subarray(0, macEnd), mac };
}
