import { AbstractBag } from './abstract.bag.js';
import { sameStoredValue } from './stored-value.js';
import { nullRecordFrom } from './null-record.js';

/**
 * Symfony's `AttributeBag`: named values stored together in one entry. The session's own
 * Flow API (`getData`/`putData`) is the default attribute storage (one entry per key); use an
 * `AttributeBag` for a namespaced group of values that a feature loads and saves as a whole.
 * Values must be serializable (checked at commit).
 */
export class AttributeBag extends AbstractBag {
  private attributes = new Map<string, unknown>();
  private readonly setKeys = new Set<string>();
  private readonly removedKeys = new Set<string>();
  private cleared = false;

  /**
   * @param name bag name for `getBag()`. @default 'attributes_bag'
   * @param storageKey storage entry key. @default the name
   */
  constructor(name = 'attributes_bag', storageKey = name) {
    super(name, storageKey);
  }

  initialize(data: unknown): void {
    this.attributes = toMap(data);
  }
  has(name: string): boolean {
    return this.attributes.has(name);
  }
  get<T = unknown>(name: string, defaultValue?: T): T | undefined {
    return this.attributes.has(name) ? (this.attributes.get(name) as T) : defaultValue;
  }
  set(name: string, value: unknown): void {
    this.attributes.set(name, value);
    this.setKeys.add(name);
    this.removedKeys.delete(name);
  }
  /** All attributes, as an object without a prototype. */
  all(): Record<string, unknown> {
    return nullRecordFrom(this.attributes);
  }
  /** Replaces all attributes. */
  replace(attributes: Record<string, unknown>): void {
    this.clear();
    for (const [k, v] of Object.entries(attributes)) this.set(k, v);
  }
  /** Removes an attribute and answers its value; `T`, as for `get<T>()`, is the caller's word for its type (unchecked). */
  remove<T = unknown>(name: string): T | undefined {
    const value = this.attributes.get(name) as T | undefined;
    this.attributes.delete(name);
    this.setKeys.delete(name);
    this.removedKeys.add(name);
    return value;
  }
  clear(): Record<string, unknown> {
    const old = this.all();
    this.attributes.clear();
    this.setKeys.clear();
    this.removedKeys.clear();
    this.cleared = true;
    return old;
  }
  getStorableData(): Record<string, unknown> | undefined {
    // A plain object (Object.fromEntries defines own properties, whatever the key): the stored
    // form stays what earlier versions wrote, so an unchanged bag is not rewritten.
    return this.attributes.size === 0 ? undefined : Object.fromEntries(this.attributes);
  }
  merge(fresh: unknown): void {
    const mine = this.attributes;
    const merged = this.cleared ? new Map<string, unknown>() : toMap(fresh);
    for (const key of this.removedKeys) merged.delete(key);
    for (const key of this.setKeys) merged.set(key, mine.get(key));
    this.attributes = merged;
  }
  /**
   * After a commit wrote `stored`: it is the new base, and the record of sets and removes
   * starts over with what changed since it was written.
   */
  committed(stored: unknown): void {
    const base = toMap(stored);
    this.setKeys.clear();
    this.removedKeys.clear();
    this.cleared = false;
    for (const [key, value] of this.attributes)
      if (!base.has(key) || !sameStoredValue(value, base.get(key))) this.setKeys.add(key);
    for (const key of base.keys()) if (!this.attributes.has(key)) this.removedKeys.add(key);
  }
}

function toMap(data: unknown): Map<string, unknown> {
  return data !== null && typeof data === 'object' ? new Map<string, unknown>(Object.entries(data)) : new Map<string, unknown>();
}
