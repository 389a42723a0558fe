import type { FlashMessages } from './flash.bag.js';
import { AbstractBag } from './abstract.bag.js';
import { startsWithStored } from './stored-value.js';
import { assertNotReserved } from '../cache/identifier.js';
import { nullRecord, nullRecordFrom } from './null-record.js';

interface Stored {
  display: FlashMessages;
  new: FlashMessages;
}

/**
 * Symfony's `AutoExpireFlashBag`: messages added in one request are shown in the next one
 * and dropped after it, read or not. `peek`/`get`/`all` see the messages for display now;
 * `add` queues messages for the next request.
 */
export class AutoExpireFlashBag extends AbstractBag {
  // Objects without a prototype (null-record.ts): their keys come from stored data.
  private display: FlashMessages = nullRecord();
  private next: FlashMessages = nullRecord();
  /** Per type, how many of the queued messages as loaded this request took for display (they expire with it). */
  private taken = new Map<string, number>();
  /** This request's changes to the queue, for `merge`: messages added, types replaced, the queue cleared. */
  private readonly added = new Map<string, unknown[]>();
  private readonly replaced = new Set<string>();
  private cleared = false;

  /**
   * @param name bag name for `getBag()`. @default 'flashes'
   * @param storageKey storage entry key. @default 'flashes_auto'
   */
  constructor(name = 'flashes', storageKey = 'flashes_auto') {
    super(name, storageKey);
  }

  initialize(data: unknown): void {
    const stored = (data ?? {}) as Partial<Stored>;
    // What the previous request queued is for display now; what was displayed then is dropped.
    this.display = nullRecordFrom(Object.entries(stored.new ?? {}));
    this.next = nullRecord();
    this.taken = new Map(Object.entries(this.display).map(([type, list]) => [type, list.length]));
  }
  add(type: string, message: unknown): void {
    assertNotReserved(type, 'flash type');
    (this.next[type] ??= []).push(message);
    const added = this.added.get(type) ?? [];
    added.push(message);
    this.added.set(type, added);
  }
  peek(type: string, defaultValue: unknown[] = []): unknown[] {
    return [...(this.display[type] ?? defaultValue)];
  }
  peekAll(): FlashMessages {
    return nullRecordFrom(Object.entries(this.display));
  }
  get(type: string, defaultValue: unknown[] = []): unknown[] {
    const messages = Object.hasOwn(this.display, type) ? this.display[type] : undefined;
    if (messages === undefined) return defaultValue;
    this.display = nullRecordFrom(Object.entries(this.display).filter(([t]) => t !== type));
    return messages;
  }
  all(): FlashMessages {
    const all = this.display;
    this.display = nullRecord();
    return all;
  }
  /** Replaces the queued messages of a type with `messages`: one message, or an array of them. */
  set(type: string, messages: unknown): void {
    assertNotReserved(type, 'flash type');
    this.next[type] = Array.isArray(messages) ? [...(messages as unknown[])] : [messages];
    this.replaced.add(type);
    this.added.delete(type);
  }
  setAll(messages: FlashMessages): void {
    this.clearQueue();
    for (const [type, list] of Object.entries(messages)) this.set(type, list);
  }
  has(type: string): boolean {
    return (this.display[type]?.length ?? 0) > 0;
  }
  keys(): string[] {
    return Object.keys(this.display);
  }
  clear(): FlashMessages {
    const old = this.all();
    this.clearQueue();
    return old;
  }
  getStorableData(): Stored | undefined {
    // Only what is queued survives this request: displayed messages expire with it.
    // Plain objects in the stored form, as earlier versions wrote it (an unchanged bag is not rewritten).
    return Object.keys(this.next).length === 0 ? undefined : { display: {}, new: Object.fromEntries(Object.entries(this.next)) };
  }
  /**
   * Re-applies this request's queue changes onto `fresh`: what it took for display is dropped,
   * what another request queued meanwhile is kept.
   */
  merge(fresh: unknown): void {
    const merged = new Map(this.cleared ? [] : Object.entries(((fresh ?? {}) as Partial<Stored>).new ?? {}));
    for (const [type, count] of this.taken) {
      const list = merged.get(type);
      if (list !== undefined) merged.set(type, list.slice(count));
    }
    for (const type of this.replaced) {
      const list = this.next[type];
      if (list === undefined) merged.delete(type);
      else merged.set(type, [...list]);
    }
    for (const [type, list] of this.added) if (!this.replaced.has(type)) merged.set(type, [...(merged.get(type) ?? []), ...list]);
    this.next = nullRecordFrom([...merged].filter(([, list]) => list.length > 0));
  }
  /**
   * After a commit wrote `stored`: it is the new base, and the record of queue changes starts
   * over with what changed since it was written. What this request displays is not affected.
   */
  committed(stored: unknown): void {
    const base = ((stored ?? {}) as Partial<Stored>).new ?? {};
    this.taken.clear();
    this.added.clear();
    this.replaced.clear();
    this.cleared = false;
    for (const type of new Set([...Object.keys(base), ...Object.keys(this.next)])) {
      const was = base[type] ?? [];
      const now = this.next[type];
      if (now !== undefined && startsWithStored(now, was)) {
        if (now.length > was.length) this.added.set(type, now.slice(was.length));
      } else {
        this.replaced.add(type);
      }
    }
  }

  private clearQueue(): void {
    this.next = nullRecord();
    this.added.clear();
    this.replaced.clear();
    this.cleared = true;
  }
}
