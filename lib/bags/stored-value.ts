/**
 * Whether two values stand for the same stored value: `a` as a bag holds it, `b` as decoded
 * from storage (a copy). Compared by identity, else by their JSON form.
 */
export function sameStoredValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  try {
    return JSON.stringify(a) === JSON.stringify(b);
  } catch {
    return false;
  }
}

/** Whether `list` starts with the values of `prefix` (see `sameStoredValue`). */
export function startsWithStored(list: readonly unknown[], prefix: readonly unknown[]): boolean {
  return prefix.length <= list.length && prefix.every((value, i) => sameStoredValue(list[i], value));
}
