/**
 * 32-bit FNV-1a over the UTF-16 code units of `text`, finished with murmur3's mixer so that the
 * low bits (what a power-of-two table uses) depend on every character. Not for security: the
 * ids hashed here are random digests and storage ids, chosen by the server.
 */
export function hashString(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return mixInt(hash);
}

/** murmur3's 32-bit finaliser: spreads the bits of an int (a slot number, a string hash). */
export function mixInt(value: number): number {
  let h = value | 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) | 0;
}
