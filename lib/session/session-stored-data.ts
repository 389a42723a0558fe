import type { SessionStore } from './session.store.js';
import type { SessionChangeSet } from './session-change-set.js';
import { assertKeyCount } from './session-key-count.js';

/** `SessionStoredData.peek`: the value is not known without reading the store asynchronously. */
export const NOT_LOCAL = Symbol('not local');

/**
 * A session's stored data as this request has read it (serialized values): nothing yet, a few
 * keys read one at a time, or every entry once something needs all of them. Reads are lazy
 * because most requests use a key or two: one plain read of that key (a GET on Redis) instead
 * of loading every entry. What a commit wrote goes on top (`acknowledge`), so the request reads
 * its own writes without asking the store again.
 */
export class SessionStoredData {
  /** Every entry, once loaded. */
  private all: Map<string, string> | undefined;
  /** Keys read one at a time before `all` was loaded (undefined value = not stored). */
  private singles: Map<string, string | undefined> | undefined;

  constructor(private readonly store: SessionStore) {}

  /** Every entry, if they were loaded. */
  get loaded(): Map<string, string> | undefined {
    return this.all;
  }

  /**
   * `maxKeysPerSession`: a key the session does not hold yet must fit, with `changes` applied.
   * Answers synchronously when the answer is known (the key is held, or all data is loaded);
   * otherwise the data is loaded first (one read, once per request).
   * @throws SessionLimitExceededException
   */
  assertRoomFor(key: string, changes: SessionChangeSet, storageId: string | undefined): Promise<void> | undefined {
    const change = changes.valueOf(key);
    if (typeof change === 'string') return undefined;
    if (this.all === undefined) {
      // A backend that counts the entries in its write enforces the cap there (SessionStore): no read.
      if (this.store.capsKeysInWrite) return undefined;
      if (change === undefined && this.singles?.get(key) !== undefined) return undefined;
      return this.loadAll(storageId).then((data) => assertKeyCount(data, changes, key, this.store.options.maxKeysPerSession));
    }
    assertKeyCount(this.all, changes, key, this.store.options.maxKeysPerSession);
    return undefined;
  }

  /**
   * The data as it stands with `changes` applied (serialized values). Internal keys (bags,
   * starting with `~`) are left out.
   */
  async withChanges(changes: SessionChangeSet, storageId: string | undefined): Promise<Map<string, string>> {
    const merged = new Map(await this.loadAll(storageId));
    for (const [key, value] of changes.data) {
      if (value === null) merged.delete(key);
      else merged.set(key, value);
    }
    for (const key of merged.keys()) if (key.startsWith('~')) merged.delete(key);
    return merged;
  }

  /**
   * The value of `key` as far as it is known without waiting: the loaded entries, a key read
   * before, or a synchronous read (memory); else `NOT_LOCAL`. `storageId` is undefined for a
   * session never stored (it has nothing to read).
   */
  peek(key: string, storageId: string | undefined): string | undefined | typeof NOT_LOCAL {
    if (this.all !== undefined) return this.all.get(key);
    if (storageId === undefined) return undefined;
    if (this.singles?.has(key) === true) return this.singles.get(key);
    if (!this.store.readsSync) return NOT_LOCAL;
    const raw = this.store.loadValueSync(storageId, key);
    (this.singles ??= new Map<string, string | undefined>()).set(key, raw);
    return raw;
  }

  /** Reads `key` alone from `storageId`, remembered for the rest of the request. */
  async read(storageId: string, key: string): Promise<string | undefined> {
    const singles = (this.singles ??= new Map<string, string | undefined>());
    const raw = await this.store.loadValue(storageId, key);
    // Another call may have loaded all data meanwhile.
    if (this.all === undefined) singles.set(key, raw);
    return raw;
  }

  /** Every entry, loaded from `storageId` on first use (none for a session never stored: undefined). */
  async loadAll(storageId: string | undefined): Promise<Map<string, string>> {
    if (this.all === undefined) {
      this.singles = undefined;
      this.all = storageId === undefined ? new Map() : await this.store.loadData(storageId);
    }
    return this.all;
  }

  /** Applies what a commit wrote (null: removed) to what was read. */
  acknowledge(written: ReadonlyMap<string, string | null>): void {
    const all = this.all;
    const singles = this.singles;
    for (const [key, value] of written) {
      if (all !== undefined) {
        if (value === null) all.delete(key);
        else all.set(key, value);
      } else if (singles !== undefined) {
        singles.set(key, value ?? undefined);
      }
    }
  }

  /** The data is now exactly `entries`: a reload, or a storage move that wrote every entry. */
  replace(entries: Map<string, string>): void {
    this.all = entries;
    this.singles = undefined;
  }

  /** A new session: nothing is stored, so everything is known (and empty). */
  startEmpty(): void {
    this.all = new Map();
  }

  /** Nothing read yet (another session adopted, or this one reset). */
  forget(): void {
    this.all = undefined;
    this.singles = undefined;
  }
}
