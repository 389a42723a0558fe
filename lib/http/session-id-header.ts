/** At most this many ids of one header are considered (as for repeated cookies). */
const MAX_CANDIDATES = 4;

/**
 * The ids a request's id header (option `idHeader`) carries, keeping only those `isValid`
 * accepts; `undefined` when the request does not send the header at all (then it is in cookie
 * mode). An empty header (a client that has no id yet) answers `[]`: header mode, no session.
 * Repeated headers (which Node joins with ", ") give several candidates, in order.
 */
export function readSessionIdHeader(
  value: string | string[] | undefined,
  isValid: (id: string) => boolean,
): string[] | undefined {
  if (value === undefined) return undefined;
  const text = Array.isArray(value) ? value.join(',') : value;
  const found: string[] = [];
  for (const part of text.split(',')) {
    if (found.length >= MAX_CANDIDATES) break;
    const id = part.trim();
    if (id !== '' && id.length <= 256 && isValid(id)) found.push(id);
  }
  return found;
}
