import { InvalidOptionException } from '../errors/invalid-option.exception.js';

/**
 * Keys the engines' store factories answer besides the stores (`createRedisSessionStores`:
 * `client`, `close`; `createPostgresSessionStores`: `pool`, `close`), which the README spreads
 * into the options as a whole: accepted and ignored.
 */
const ENGINE_EXTRAS = ['client', 'close', 'pool'];

/** Option groups whose keys are checked too (their resolved counterparts list every known key). */
const NESTED = ['cookie', 'lock', 'garbageCollection', 'ipLock'] as const;

/**
 * Refuses keys that `resolved` (the options after defaults, which name every option the module
 * knows) does not have, at the top level and in the nested groups, so a typo such as
 * `inactivityTimout` fails at boot instead of silently leaving the default in place. The
 * message suggests the nearest known name (also one in another group: `secure` at the top level
 * suggests `cookie.secure`).
 * @throws InvalidOptionException naming the unknown key.
 */
export function assertKnownOptions(given: object, resolved: object): void {
  const known = new Map<string, readonly string[]>([['', Object.keys(resolved)]]);
  for (const group of NESTED) {
    const value: unknown = (resolved as Record<string, unknown>)[group];
    known.set(group, isPlainObject(value) ? Object.keys(value) : []);
  }
  check(given, '', known);
  for (const group of NESTED) {
    const value: unknown = (given as Record<string, unknown>)[group];
    if (isPlainObject(value)) check(value, group, known);
  }
}

function check(given: object, group: string, known: ReadonlyMap<string, readonly string[]>): void {
  const names = known.get(group) ?? [];
  for (const key of Object.keys(given)) {
    // An explicitly undefined key is what spreading optional settings gives; it sets nothing, but is still checked.
    if (names.includes(key) || (group === '' && ENGINE_EXTRAS.includes(key))) continue;
    const path = group === '' ? key : `${group}.${key}`;
    const suggestion = nearest(key, group, known);
    throw InvalidOptionException.create(
      path,
      `is not a SessionModule option${suggestion === undefined ? '' : `; did you mean "${suggestion}"?`}` +
        ` Known ${group === '' ? 'options' : `${group} options`}: ${names.join(', ')}`,
    );
  }
}

/** The known option path closest to `key` (edit distance at most 2, or the same name ignoring case), if any. */
function nearest(key: string, group: string, known: ReadonlyMap<string, readonly string[]>): string | undefined {
  let best: { path: string; distance: number } | undefined;
  for (const [other, names] of known) {
    for (const name of names) {
      const distance = key.toLowerCase() === name.toLowerCase() ? 0 : editDistance(key, name);
      // The same group wins a tie: `cookie.sameSit` means `cookie.sameSite`.
      const score = distance + (other === group ? 0 : 0.5);
      if (distance <= Math.min(2, Math.floor(name.length / 3)) && (best === undefined || score < best.distance)) {
        best = { path: other === '' ? name : `${other}.${name}`, distance: score };
      }
    }
  }
  return best?.path;
}

/** Levenshtein distance, with a transposition counting one (Damerau, optimal string alignment). */
function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row: number[] = [i];
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        row.push(j);
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, row[j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      row.push(d);
    }
    rows.push(row);
  }
  return rows[a.length]![b.length]!;
}

function isPlainObject(value: unknown): value is object {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
