/*
 * An entry is one string `<expiry ms or 0> <version>\n<tags separated by spaces>\n<data>`
 * (identifiers and tags contain neither spaces nor newlines, the data may contain anything), so
 * a read is one GET and many reads are one MGET, decoded here; scripts find an entry's tags in
 * the entry itself.
 *
 * Expiry is checked against this process's clock (`Date.now()`), not Redis `TIME`: reads stay
 * plain GET/MGET answered without a script, and the check agrees with the session manager's own
 * inactivity checks and with MemoryBackend. The cost is that application servers need synchronised
 * clocks (NTP): a skew of s seconds moves expiry by s. Native TTLs (Redis' clock) add
 * `safetyTtlMargin`, far more than any sane skew, so Redis never drops an entry before it expired.
 *
 * Only this format is written (by `encodeEntry` and, for a guard the WRITE script creates, by
 * `encodeGuardHead`); a value without it reads as not ours.
 */

/** `has()` reads only this many leading bytes: enough for the header line (expiry and version). */
export const HEADER_BYTES = 48;

/** An entry's parts. */
export interface DecodedEntry {
  /** Expiry epoch ms, 0 = never. */
  readonly expiry: number;
  /** Its tags, separated by spaces. */
  readonly tags: string;
  readonly data: string;
}

/** The stored string of an entry. */
export function encodeEntry(expiry: number, version: string, tags: readonly string[], data: string): string {
  return `${expiry} ${version}\n${tags.join(' ')}\n${data}`;
}

/** A guard entry without its data (the WRITE script appends the fence); expiry 0 = never. */
export function encodeGuardHead(expiry: number, version: string, tags: readonly string[]): string {
  return `${expiry} ${version}\n${tags.join(' ')}\n`;
}

/** Whether an entry that expires at `expiry` (0 = never) is live at `now`. */
export function isLive(expiry: number, now: number): boolean {
  return expiry === 0 || expiry > now;
}

/** The expiry of a header line `<expiry> <version>` ending at `lineEnd`, or `undefined` if it is not ours. */
function headerExpiry(raw: string, lineEnd: number): number | undefined {
  const space = raw.indexOf(' ');
  return space < 0 || space > lineEnd ? undefined : Number(raw.slice(0, space));
}

/** Whether the leading bytes of an entry (at least its header line) say it is live at `now`. */
export function isLiveHeader(head: unknown, now: number): boolean {
  if (typeof head !== 'string') return false;
  const lineEnd = head.indexOf('\n');
  if (lineEnd < 0) return false;
  const expiry = headerExpiry(head, lineEnd);
  return expiry !== undefined && isLive(expiry, now);
}

/** An encoded entry's parts, or `undefined` if it is not ours. */
export function parseEntry(raw: string): DecodedEntry | undefined {
  const a = raw.indexOf('\n');
  const b = a < 0 ? -1 : raw.indexOf('\n', a + 1);
  if (b < 0) return undefined;
  const expiry = headerExpiry(raw, a);
  if (expiry === undefined) return undefined;
  return { expiry, tags: raw.slice(a + 1, b), data: raw.slice(b + 1) };
}

/** The data of an encoded entry, or `undefined` if it is missing, not ours or expired at `now`. */
export function decodeEntry(raw: unknown, now: number): string | undefined {
  if (typeof raw !== 'string') return undefined;
  const entry = parseEntry(raw);
  return entry === undefined || !isLive(entry.expiry, now) ? undefined : entry.data;
}
