import type { FlashMessages } from './flash.bag.js';
import { AbstractBag } from './abstract.bag.js';

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
  private display: FlashMessages = {};
  private next: FlashMessages = {};

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
    this.display = { ...(stored.new ?? {}) };
    this.next = {};
  }
  add(type: string, message: unknown): void {
    (this.next[type] ??= []).push(message);
  }
  peek(type: string, defaultValue: unknown[] = []): unknown[] {
    return [...(this.display[type] ?? defaultValue)];
  }
  peekAll(): FlashMessages {
    return { ...this.display };
  }
  get(type: string, defaultValue: unknown[] = []): unknown[] {
    const { [type]: messages, ...rest } = this.display;
    if (messages === undefined) return defaultValue;
    this.display = rest;
    return messages;
  }
  all(): FlashMessages {
    const all = this.display;
    this.display = {};
    return all;
  }
  /** Replaces the queued messages of a type with `messages`: one message, or an array of them. */
  set(type: string, messages: unknown): void {
    this.next[type] = Array.isArray(messages) ? [...(messages as unknown[])] : [messages];
  }
  setAll(messages: FlashMessages): void {
    this.next = { ...messages };
  }
  has(type: string): boolean {
    return (this.display[type]?.length ?? 0) > 0;
  }
  keys(): string[] {
    return Object.keys(this.display);
  }
  clear(): FlashMessages {
    const old = this.all();
    this.next = {};
    return old;
  }
  getStorableData(): Stored | undefined {
    // Only what is queued survives this request: displayed messages expire with it.
    return Object.keys(this.next).length === 0 ? undefined : { display: {}, new: this.next };
  }
  merge(fresh: unknown): void {
    const stored = (fresh ?? {}) as Partial<Stored>;
    const merged: FlashMessages = { ...(stored.new ?? {}) };
    for (const [type, list] of Object.entries(this.next)) merged[type] = [...(merged[type] ?? []), ...list];
    this.next = merged;
  }
}
