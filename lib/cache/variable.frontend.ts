import { storeFailure } from './store-failure.js';
import { runInOrder, type WriteOrder } from './write-ticket.js';
import type { SessionSerializer } from './session-serializer.interface.js';
import type {
  BackendEntry,
  TagPage,
  TaggableBackend,
  WriteBatch,
  WriteGuard,
  WriteResult,
} from './taggable-backend.interface.js';

/**
 * Flow's `VariableFrontend`: a tag-aware cache of values over a `TaggableBackend`. It owns
 * (de)serialization and turns every backend failure into `StoreUnavailableException`, so
 * callers above see typed errors only. Identifiers and tags are validated by the session
 * layer before they get here.
 */
export class VariableFrontend {
  constructor(
    readonly backend: TaggableBackend,
    private readonly serializer: SessionSerializer,
  ) {}

  /** Serializes a value for a later `write`; throws what the serializer throws. */
  encode(value: unknown): string {
    return this.serializer.serialize(value);
  }

  decode<T = unknown>(data: string): T {
    return this.serializer.deserialize(data) as T;
  }

  get<T = unknown>(id: string): Promise<T | undefined> {
    return this.call('get', () => this.backend.get(id)).then((data) => (data === undefined ? undefined : this.decode<T>(data)));
  }

  /** Whether `getRawSync` answers (the backend reads synchronously). */
  readsSync(): boolean {
    return this.backend.getSync !== undefined;
  }

  /**
   * `getRaw` answered synchronously; only when `readsSync()`.
   * @throws StoreUnavailableException as `getRaw` rejects.
   */
  getRawSync(id: string): string | undefined {
    try {
      return this.backend.getSync!(id);
    } catch (error) {
      throw storeFailure(`${this.backend.name} get`, error);
    }
  }

  /** The raw (still serialized) data of an entry. */
  getRaw(id: string): Promise<string | undefined> {
    return this.call('get', () => this.backend.get(id));
  }

  /** Raw (still serialized) entries with `tag`, by id. */
  getRawByTag(tag: string): Promise<BackendEntry[]> {
    return this.call('getByTag', () => this.backend.getByTag(tag));
  }

  async set(id: string, value: unknown, tags?: readonly string[], lifetime?: number): Promise<void> {
    const data = this.encode(value);
    await this.call('set', () => this.backend.set(id, data, tags, lifetime));
  }

  /** `order`: see `WriteOrder` (handled here for backends without `ordersWrites`). */
  write(batch: WriteBatch, guard?: WriteGuard, order?: WriteOrder): Promise<WriteResult> {
    return this.inOrder(
      'write',
      order,
      (given) => this.backend.write(batch, guard, given),
      (result) => result === 'ok',
      'skipped',
    );
  }

  has(id: string): Promise<boolean> {
    return this.call('has', () => this.backend.has(id));
  }

  /** `order`: see `WriteOrder` (applied = the entry existed). */
  remove(id: string, order?: WriteOrder): Promise<boolean> {
    return this.inOrder(
      'remove',
      order,
      (given) => this.backend.remove(id, given),
      (existed) => existed,
      false,
    );
  }

  /** `order`: see `WriteOrder` (a flush that ran counts as applied). */
  flushByTag(tag: string, order?: WriteOrder): Promise<number> {
    return this.inOrder(
      'flushByTag',
      order,
      (given) => this.backend.flushByTag(tag, given),
      () => true,
      0,
    );
  }

  findIdentifiersByTag(tag: string): Promise<string[]> {
    return this.call('findIdentifiersByTag', () => this.backend.findIdentifiersByTag(tag));
  }

  /** Whether the backend pages its tag index (`TaggableBackend.findIdentifiersByTagPage`). */
  pagesTags(): boolean {
    return this.backend.findIdentifiersByTagPage !== undefined;
  }

  /** One page of the identifiers carrying `tag`; only when `pagesTags()`. */
  findIdentifiersByTagPage(tag: string, cursor: string | undefined, limit: number): Promise<TagPage> {
    return this.call('findIdentifiersByTagPage', () => this.backend.findIdentifiersByTagPage!(tag, cursor, limit));
  }

  getMany(ids: readonly string[]): Promise<(string | undefined)[]> {
    return this.call('getMany', () => this.backend.getMany(ids));
  }

  collectGarbage(limit?: number): Promise<BackendEntry[]> {
    return this.call('collectGarbage', () => this.backend.collectGarbage(limit));
  }

  flush(): Promise<void> {
    return this.call('flush', () => this.backend.flush());
  }

  /**
   * Runs a write with its `order`: passed down to a backend that `ordersWrites` (`send` gets it;
   * a failed call did not apply, whatever the backend did with the ticket), or honoured here by
   * waiting for the prerequisites (`send` gets none).
   */
  private inOrder<T>(
    operation: string,
    order: WriteOrder | undefined,
    send: (order: WriteOrder | undefined) => Promise<T>,
    applied: (result: T) => boolean,
    skipped: T,
  ): Promise<T> {
    if (order === undefined) return this.call(operation, () => send(undefined));
    if (this.backend.ordersWrites !== true)
      return runInOrder(order, () => this.call(operation, () => send(undefined)), applied, skipped);
    return this.call(operation, () => send(order)).catch((error: unknown) => {
      order.ticket?.settle(false);
      throw error;
    });
  }

  /** Maps backend failures to typed errors; no async wrapper, so a hit costs one promise. */
  private call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    let pending: Promise<T>;
    try {
      pending = fn();
    } catch (error) {
      return Promise.reject(storeFailure(`${this.backend.name} ${operation}`, error));
    }
    return pending.catch((error: unknown) => {
      // Engines wrap their own driver errors; this catches a backend that does not.
      throw storeFailure(`${this.backend.name} ${operation}`, error);
    });
  }
}
