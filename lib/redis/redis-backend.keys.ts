import { InvalidOptionException } from '../errors/invalid-option.exception.js';

/*
 * Key layout (P = prefix; P contains no braces, so the text before the first `{` of a key names
 * its owner and backends with different prefixes can never collide):
 *
 *   P{group}rest   an entry (a string, see below). The group of an id is the text before its
 *                  first `.`, rest is the remainder including that dot: `sess:s:{k3J9}.cart`,
 *                  `sess:m:{k3J9}` for an id without a dot.
 *   P{tag}#tag     a sorted set of the ids carrying `tag`, scored with the version of the write
 *                  that added them (see "Versions" below).
 *   P{}#expiry     one sorted set: id -> expiry epoch ms, for entries that have a lifetime.
 *
 * The braces are Redis Cluster hash tags: all entries of one group and the tag set named like
 * that group hash to one slot. A session's storage entries (`storageId.key`, tagged with
 * `storageId`) therefore share one slot with their guard entry and their tag set, which is what
 * the slot-group rule of `TaggableBackend` promises callers. (An id starting with a dot has an
 * empty group, `P{}.x`: Redis then hashes the whole key, so such an id is a slot of its own.)
 */

/** Group of an id: the text before its first `.` (the whole id without one). */
export function groupOf(id: string): string {
  const dot = id.indexOf('.');
  return dot < 0 ? id : id.slice(0, dot);
}

/**
 * What decides an id's cluster slot: its group, or for an id with an empty group (`.x`, whose
 * key Redis hashes whole) the id itself, marked by its leading dot.
 */
export function slotUnit(id: string): string {
  const group = groupOf(id);
  return group === '' ? id : group;
}

/** Items grouped by `keyOf` (groups and their items in first-seen order). */
export function groupBy<T>(items: Iterable<T>, keyOf: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const key = keyOf(item);
    const list = groups.get(key);
    if (list === undefined) groups.set(key, [item]);
    else list.push(item);
  }
  return groups;
}

/** Items grouped by the slot unit of their id: one command per group on a cluster. */
export function bySlotUnit<T>(items: Iterable<T>, idOf: (item: T) => string): Map<string, T[]> {
  return groupBy(items, (item) => slotUnit(idOf(item)));
}

/** The hash tag of a key (text between the first `{` and the next `}`), or the key when it has none. */
export function hashTagOf(key: string): string {
  const open = key.indexOf('{');
  const close = open < 0 ? -1 : key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

/**
 * A key prefix must not contain braces: they delimit Redis Cluster hash tags.
 * @throws InvalidOptionException naming `option` otherwise.
 */
export function assertRedisPrefix(option: string, prefix: unknown): asserts prefix is string {
  if (typeof prefix !== 'string' || /[{}]/.test(prefix)) {
    throw InvalidOptionException.create(
      option,
      `must be a string without "{" and "}" (they delimit Redis Cluster hash tags), got ${JSON.stringify(prefix)}`,
    );
  }
}

/** The Redis keys of one backend (one prefix), as laid out above. */
export class RedisBackendKeys {
  /** The expiry index (a sorted set: id -> expiry epoch ms). */
  readonly expiryKey: string;
  /** SCAN pattern of every key under the prefix (and of no other prefix). */
  readonly pattern: string;

  constructor(readonly prefix: string) {
    this.expiryKey = `${prefix}{}#expiry`;
    this.pattern = `${escapeGlob(prefix)}{*`;
  }

  entryKey(id: string): string {
    const dot = id.indexOf('.');
    return dot < 0 ? `${this.prefix}{${id}}` : `${this.prefix}{${id.slice(0, dot)}}${id.slice(dot)}`;
  }

  /** The sorted set of ids carrying `tag`. */
  tagKey(tag: string): string {
    return `${this.prefix}{${tag}}#tag`;
  }

  /** The key a script for one slot unit is routed by: the group's tag set, or the entry of a dot id. */
  unitKey(unit: string, firstId: string): string {
    return unit.startsWith('.') ? this.entryKey(firstId) : this.tagKey(unit);
  }
}

/** Escapes Redis glob metacharacters so a prefix matches only itself. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
