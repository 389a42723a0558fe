/*
 * Objects built from session data have no prototype: a key such as `__proto__` (refused as a key,
 * tag or bag name, but possibly present in data stored by an older version or another app) then
 * stays a plain entry and can never reach `Object.prototype`, and `constructor`/`toString` are not
 * inherited where code reads `record[name]`.
 */

/** An empty object without a prototype. */
export function nullRecord<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

/** An object without a prototype holding `entries` (a later entry overwrites an earlier one). */
export function nullRecordFrom<T>(entries: Iterable<readonly [string, T]>): Record<string, T> {
  const record = nullRecord<T>();
  for (const [key, value] of entries) record[key] = value;
  return record;
}
