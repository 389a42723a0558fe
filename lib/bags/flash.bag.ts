import { AbstractBag } from './abstract.bag.js';
import { startsWithStored } from './stored-value.js';
import { assertNotReserved } from '../cache/identifier.js';
import { nullRecordFrom } from './null-record.js';

/** Flash messages by type. */
export type FlashMessages = Record<string, unknown[]>;

/**
 * Symfony's `FlashBag`: messages that survive a redirect and are gone once read
 * (`get`/`all` consume them; `peek`/`peekAll` do not). Concurrent requests that add messages
 * lose none: at commit, additions and consumptions are re-applied onto what is stored.
 */
export class FlashBag extends AbstractBag {
  protected flashes: Map<string, unknown[]> = new Map();
  private readonly added = new Map<string, unknown[]>();
  /** Per type, how many of the initially loaded messages this request consumed. */
  private readonly consumed = new Map<string, number>();
  private replacedTypes = new Set<string>();
  private cleared = false;

  /**
   * @param name bag name for `getBag()`. @default 'flashes'
   * @param storageKey storage entry key. @default the name
   */
  constructor(name = 'flashes', storageKey = name) {
    super(name, storageKey);
  }

  initialize(data: unknown): void {
    this.flashes = toFlashMap(data);
  }
  /** Adds a message of a type (e.g. 'success', 'error'). */
  add(type: string, message: unknown): void {
    assertNotReserved(type, 'flash type');
    const list = this.flashes.get(type) ?? [];
    list.push(message);
    this.flashes.set(type, list);
    const added = this.added.get(type) ?? [];
    added.push(message);
    this.added.set(type, added);
  }
  /** Messages of a type, without consuming them. */
  peek(type: string, defaultValue: unknown[] = []): unknown[] {
    return [...(this.flashes.get(type) ?? defaultValue)];
  }
  /** All messages by type (an object without a prototype), without consuming them. */
  peekAll(): FlashMessages {
    return nullRecordFrom([...this.flashes].map(([t, m]) => [t, [...m]] as const));
  }
  /** Messages of a type, consuming them. */
  get(type: string, defaultValue: unknown[] = []): unknown[] {
    const messages = this.flashes.get(type);
    if (messages === undefined) return defaultValue;
    this.flashes.delete(type);
    this.noteConsumed(type, messages.length);
    return messages;
  }
  /** All messages, consuming them. */
  all(): FlashMessages {
    const result = this.peekAll();
    for (const [type, messages] of this.flashes) this.noteConsumed(type, messages.length);
    this.flashes.clear();
    return result;
  }
  /** Replaces the messages of a type with `messages`: one message, or an array of them. */
  set(type: string, messages: unknown): void {
    assertNotReserved(type, 'flash type');
    const list = Array.isArray(messages) ? [...(messages as unknown[])] : [messages];
    this.flashes.set(type, list);
    this.replacedTypes.add(type);
    this.added.delete(type);
  }
  /** Replaces all messages. */
  setAll(messages: FlashMessages): void {
    this.clear();
    for (const [type, list] of Object.entries(messages)) this.set(type, list);
  }
  has(type: string): boolean {
    return (this.flashes.get(type)?.length ?? 0) > 0;
  }
  keys(): string[] {
    return [...this.flashes.keys()];
  }
  clear(): FlashMessages {
    const old = this.all();
    this.added.clear();
    this.replacedTypes.clear();
    this.cleared = true;
    return old;
  }
  getStorableData(): FlashMessages | undefined {
    // A plain object (Object.fromEntries defines own properties, whatever the key): the stored
    // form stays what earlier versions wrote, so an unchanged bag is not rewritten.
    const stored = [...this.flashes].filter(([, list]) => list.length > 0);
    return stored.length > 0 ? Object.fromEntries(stored) : undefined;
  }
  merge(fresh: unknown): void {
    const merged = this.cleared ? new Map<string, unknown[]>() : toFlashMap(fresh);
    for (const [type, count] of this.consumed) {
      const list = merged.get(type);
      if (list) list.splice(0, count);
    }
    for (const type of this.replacedTypes) merged.set(type, [...(this.flashes.get(type) ?? [])]);
    for (const [type, messages] of this.added) {
      if (this.replacedTypes.has(type)) continue;
      merged.set(type, [...(merged.get(type) ?? []), ...messages]);
    }
    this.flashes = merged;
  }
  /**
   * After a commit wrote `stored`: it is the new base, and this request's record of adds and
   * reads starts over with what changed since it was written (a type that no longer starts
   * with its stored messages counts as read, then added to).
   */
  committed(stored: unknown): void {
    const base = toFlashMap(stored);
    this.added.clear();
    this.consumed.clear();
    this.replacedTypes.clear();
    this.cleared = false;
    for (const type of new Set([...base.keys(), ...this.flashes.keys()])) {
      const was = base.get(type) ?? [];
      const now = this.flashes.get(type) ?? [];
      const kept = startsWithStored(now, was);
      if (!kept && was.length > 0) this.consumed.set(type, was.length);
      const added = kept ? now.slice(was.length) : now;
      if (added.length > 0) this.added.set(type, [...added]);
    }
  }

  private noteConsumed(type: string, count: number): void {
    // Messages added in this request and consumed in it were never stored by anyone.
    const addedHere = this.added.get(type)?.length ?? 0;
    this.added.delete(type);
    const fromStore = Math.max(0, count - addedHere);
    this.consumed.set(type, (this.consumed.get(type) ?? 0) + fromStore);
  }
}

function toFlashMap(data: unknown): Map<string, unknown[]> {
  const map = new Map<string, unknown[]>();
  if (data !== null && typeof data === 'object') {
    for (const [type, list] of Object.entries(data)) if (Array.isArray(list)) map.set(type, [...(list as unknown[])]);
  }
  return map;
}
