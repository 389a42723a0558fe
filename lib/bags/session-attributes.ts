import { nullRecord } from './null-record.js';

/** How the default attribute bag reaches the session's own per-key data. */
export interface SessionAttributesSource {
  keys(): string[];
  read(key: string): unknown;
  has(key: string): boolean;
  write(key: string, value: unknown): void;
  delete(key: string): void;
}

/**
 * The default attribute bag, `session.getBag('attributes')`: a synchronous view of the same
 * per-key data as Flow's `getData`/`putData` (one storage entry per key, only changed keys
 * written). `set` serializes at once and throws `DataNotSerializableException` like `putData`.
 */
export class SessionAttributes {
  constructor(private readonly source: SessionAttributesSource) {}

  getName(): string {
    return 'attributes';
  }
  has(name: string): boolean {
    return this.source.has(name);
  }
  get<T = unknown>(name: string, defaultValue?: T): T | undefined {
    return this.source.has(name) ? (this.source.read(name) as T) : defaultValue;
  }
  set(name: string, value: unknown): void {
    this.source.write(name, value);
  }
  /** All attributes, as an object without a prototype. */
  all(): Record<string, unknown> {
    const result = nullRecord<unknown>();
    for (const key of this.source.keys()) result[key] = this.source.read(key);
    return result;
  }
  replace(attributes: Record<string, unknown>): void {
    this.clear();
    for (const [k, v] of Object.entries(attributes)) this.set(k, v);
  }
  /** Removes an attribute and answers its value; `T`, as for `get<T>()`, is the caller's word for its type (unchecked). */
  remove<T = unknown>(name: string): T | undefined {
    const value = this.get<T>(name);
    this.source.delete(name);
    return value;
  }
  clear(): Record<string, unknown> {
    const old = this.all();
    for (const key of Object.keys(old)) this.source.delete(key);
    return old;
  }
}
