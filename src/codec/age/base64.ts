/**
 * The base64 dialect of age headers: standard alphabet, no padding, and only
 * canonical encodings (the unused low bits of the last character must be zero),
 * as the age spec requires. Node's own decoder is lenient, so we check here.
 */

const B64_CHARS = /^[A-Za-z0-9+/]*$/;

export function b64encode(bytes: Uint8Array): string {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
  let end = text.length;
  while (end > 0 && text.charCodeAt(end - 1) === 61 /* = */) end--;
  return text.slice(0, end);
}

/** Decodes strict unpadded base64; returns null for anything non-canonical. */
export function b64decode(text: string): Buffer | null {
  if (text.length % 4 === 1 || !B64_CHARS.test(text)) return null;
  const bytes = Buffer.from(text, 'base64');
  if (b64encode(bytes) !== text) return null;
  return bytes;
}

/** True if every character is in the base64 alphabet (a stanza body line). */
export function isB64Line(text: string): boolean {
  return B64_CHARS.test(text);
}
