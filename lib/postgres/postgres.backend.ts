import { checkedGuard, checkedMustExist, checkedWrite, gcLimit } from '../cache/backend-arguments.js';
import { assertCacheIdentifier, assertIdentifier, CACHE_IDENTIFIER_PATTERN } from '../cache/identifier.js';
import { expiryAt } from '../cache/lifetime.js';
import { attemptStore } from '../cache/store-failure.js';
import { runInOrder, type WriteOrder } from '../cache/write-ticket.js';
import type {
  BackendEntry,
  BackendWrite,
  TaggableBackend,
  TagPage,
  WriteBatch,
  WriteGuard,
  WriteResult,
} from '../cache/taggable-backend.interface.js';
import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { InvalidOptionException } from '../errors/invalid-option.exception.js';
import { rowsOf, Statement, type PostgresQueryable } from './postgres-client.js';
import { PostgresNames, type PostgresSchemaOptions } from './postgres-names.js';
import type { PostgresLocker } from './postgres.locker.js';
import {
  batchedOperationApplied,
  SKIPPED_ANSWER,
  type BatchedOperation,
  type BatchedWriteArguments,
  type PostgresWriteBatcher,
} from './postgres-write.batcher.js';

/** Options of {@link PostgresBackend}. */
export interface PostgresBackendOptions extends PostgresSchemaOptions {
  /**
   * A `pg.Pool` (or anything with its `query()`). The backend never ends it. Its settings
   * decide what an operation does while PostgreSQL is unreachable: give it a
   * `connectionTimeoutMillis` and a `statement_timeout` (what `createPostgresSessionStores()`
   * does), and a listener for its `'error'` event, or an idle connection that breaks crashes
   * the process (node-postgres' rule). An operation that fails throws `StoreUnavailableException`.
   */
  pool: PostgresQueryable;
  /**
   * Keeps this backend's entries apart from those of other backends in the same tables (the
   * session stores use `<prefix>m` and `<prefix>s`). 1-100 characters of A-Z a-z 0-9 _ % & - . :
   * @default 'sess'
   */
  namespace?: string;
  /**
   * Send every statement as a named prepared statement (parsed and planned once per
   * connection). Turn off behind a connection pooler that cannot keep prepared statements
   * (PgBouncer in transaction mode before 1.21).
   * @default true
   */
  preparedStatements?: boolean;
  /**
   * A `PostgresLocker` on the same database, schema and table prefix, whose locks guarded
   * writes with `WriteGuard.unlocked` check in the same function call: a commit that holds no
   * lock then costs one statement instead of acquire + write + release.
   * `createPostgresSessionStores` sets it for its storage backend.
   * @default undefined (unlocked writes are refused)
   */
  locker?: PostgresLocker;
  /**
   * A batcher shared with other backends on the same pool, schema and table prefix: their
   * writes, removes and flushes issued in the same tick go to PostgreSQL as one statement (one
   * transaction, one WAL flush), each still applied and answered as if sent alone; a chain of
   * dependent writes (`WriteOrder`) issued in one tick is one statement too (`ordersWrites`).
   * `createPostgresSessionStores` gives its two backends one.
   * @default undefined (every operation is its own statement)
   */
  batcher?: PostgresWriteBatcher;
}

const DEFAULT_NAMESPACE = 'sess';
const NAMESPACE_PATTERN = /^[A-Za-z0-9_%&\-.:]{1,100}$/;
/** Expired entries removed per statement of `collectGarbage()`: bounds one transaction. */
const GC_CHUNK = 1000;
const NO_TAGS: readonly string[] = Object.freeze([]);
const NO_WRITES: readonly BackendWrite[] = Object.freeze([]);
const NO_MATCHES: NonNullable<WriteBatch['mustMatch']> = Object.freeze([]);

/**
 * `WriteGuard.copyFrom` needs a creating guard that draws no fence (a fresh group nobody else
 * knows) and another group: refused before anything reaches the database, as on the other backends.
 */
function checkCopyFrom(guard: WriteGuard): void {
  const from = guard.copyFrom!;
  const group = guard.id.split('.', 1)[0]!;
  if (guard.create !== true || guard.unlocked === true || typeof from !== 'string' || from.includes('.') || from === group) {
    throw InvalidArgumentException.fromStore(
      `WriteGuard.copyFrom needs a creating guard (create: true, not unlocked) and another group (an id without "."), got "${from}" for guard "${guard.id}".`,
    );
  }
  assertCacheIdentifier(from, 'WriteGuard.copyFrom');
}

/** The statements of one backend, built once from the validated names. */
class BackendStatements {
  readonly get: Statement;
  readonly getMany: Statement;
  readonly has: Statement;
  readonly remove: Statement;
  readonly byTag: Statement;
  readonly idsByTag: Statement;
  readonly tagPage: Statement;
  readonly write: Statement;
  readonly flushByTag: Statement;
  readonly flush: Statement;
  readonly collect: Statement;

  constructor(names: PostgresNames) {
    const entries = names.entries();
    const tags = names.tags();
    const live = (alias: string, now: string) => `(${alias}.expires_at IS NULL OR ${alias}.expires_at > ${now})`;
    this.get = new Statement(`SELECT e.value FROM ${entries} e WHERE e.namespace = $1 AND e.id = $2 AND ${live('e', '$3')}`);
    this.getMany = new Statement(
      `SELECT e.id, e.value FROM ${entries} e WHERE e.namespace = $1 AND e.id = ANY ($2::text[]) AND ${live('e', '$3')}`,
    );
    this.has = new Statement(`SELECT 1 FROM ${entries} e WHERE e.namespace = $1 AND e.id = $2 AND ${live('e', '$3')}`);
    this.remove = new Statement(
      `DELETE FROM ${entries} e WHERE e.namespace = $1 AND e.id = $2 RETURNING ${live('e', '$3::timestamptz')} AS live`,
    );
    const tagged = `FROM ${tags} t JOIN ${entries} e ON e.namespace = t.namespace AND e.id = t.id WHERE t.namespace = $1 AND t.tag = $2`;
    this.byTag = new Statement(`SELECT e.id, e.value ${tagged} AND ${live('e', '$3')}`);
    this.idsByTag = new Statement(`SELECT e.id ${tagged} AND ${live('e', '$3')}`);
    this.tagPage = new Statement(
      `SELECT t.id, ${live('e', '$3::timestamptz')} AS live ${tagged} AND t.id > $4 ORDER BY t.id LIMIT $5`,
    );
    this.write = new Statement(
      `SELECT ${names.fn('write')}($1, $2::timestamptz, $3, $4::double precision, $5, $6, $7::text[], $8, $9::timestamptz, ` +
        `$10::text[], $11::text[], $12::text[], $13::timestamptz[], $14::text[], $15::text[], $16::text[], $17, $18::integer, $19, ` +
        `$20::text[], $21::text[], $22) AS result`,
    );
    this.flushByTag = new Statement(`SELECT ${names.fn('flush_by_tag')}($1, $2, $3::timestamptz, $4) AS removed`);
    this.flush = new Statement(`DELETE FROM ${entries} e WHERE e.namespace = $1`);
    // The due range of the expiry index, oldest first; rows another collector (or a writer)
    // holds are skipped, not waited for. Re-checked in the DELETE: a row renewed meanwhile stays.
    this.collect = new Statement(
      `WITH due AS (
         SELECT e.id FROM ${entries} e WHERE e.namespace = $1 AND e.expires_at <= $2
         ORDER BY e.expires_at, e.id LIMIT $3 FOR UPDATE SKIP LOCKED
       ), gone AS (
         DELETE FROM ${entries} e USING due WHERE e.namespace = $1 AND e.id = due.id AND e.expires_at <= $2
         RETURNING e.id, e.value, e.expires_at
       )
       SELECT gone.id, gone.value FROM gone ORDER BY gone.expires_at, gone.id`,
    );
  }
}

/**
 * Cache backend on PostgreSQL (node-postgres), for sessions that live in the database an
 * application already runs and survive its restarts. Tables and functions come from
 * `migrate()` / `postgresSchemaSql()` (see README "PostgreSQL").
 *
 * - Every read is one statement over a primary-key or tag-index range, with the expiry checked
 *   in the statement: an expired entry is invisible before garbage collection removes it.
 * - `write()` is one call of the schema's `write` function: one statement, one transaction, so
 *   a guarded or conditional batch is applied whole or not at all.
 * - Tag look-ups and `flushByTag` are O(matches) (the tags table's primary key), pages are
 *   keyset pages of it (O(limit), no repeats), `collectGarbage` is O(expired) (a partial index
 *   on the expiry), in batches of 1000 with `FOR UPDATE SKIP LOCKED`.
 * - Expiry is checked against this process's clock (`Date.now()`, passed with each statement),
 *   like the memory and Redis backends and the session manager's own checks: application
 *   servers need synchronised clocks (NTP). Entries have no native expiry; garbage collection
 *   removes them.
 * - Failures (connection refused, statement timeout, ...) surface as `StoreUnavailableException`.
 */
export class PostgresBackend implements TaggableBackend {
  readonly name = 'postgres';

  /** The namespace of this backend's entries. */
  readonly namespace: string;
  /** The schema and table prefix in use. */
  readonly names: PostgresNames;
  private readonly pool: PostgresQueryable;
  private readonly prepare: boolean;
  private readonly sql: BackendStatements;
  private readonly locker: PostgresLocker | undefined;
  private readonly batcher: PostgresWriteBatcher | undefined;

  /**
   * @throws InvalidOptionException for a missing pool, a bad schema, table prefix or namespace,
   *   or a locker or batcher on other tables (or a batcher on another pool).
   */
  constructor(options: PostgresBackendOptions) {
    const given = options as Partial<PostgresBackendOptions> | null | undefined;
    if (typeof given?.pool?.query !== 'function') {
      throw InvalidOptionException.create('postgres.pool', 'must be a pg.Pool (or anything with its query())');
    }
    const namespace = options.namespace ?? DEFAULT_NAMESPACE;
    if (typeof namespace !== 'string' || !NAMESPACE_PATTERN.test(namespace)) {
      throw InvalidOptionException.create(
        'postgres.namespace',
        `must be 1-100 characters of A-Z, a-z, 0-9, "_", "%", "&", "-", "." and ":", got ${JSON.stringify(namespace)}`,
      );
    }
    this.names = new PostgresNames(options);
    this.namespace = namespace;
    this.pool = options.pool;
    this.prepare = options.preparedStatements ?? true;
    this.sql = new BackendStatements(this.names);
    this.locker = options.locker;
    if (this.locker !== undefined && this.locker.tables !== `${this.names.schema}.${this.names.tablePrefix}`) {
      throw InvalidOptionException.create('postgres.locker', 'must use the same schema and tablePrefix as the backend');
    }
    this.batcher = options.batcher;
    if (
      this.batcher !== undefined &&
      (this.batcher.queryable !== this.pool ||
        this.batcher.names.schema !== this.names.schema ||
        this.batcher.names.tablePrefix !== this.names.tablePrefix)
    ) {
      throw InvalidOptionException.create('postgres.batcher', 'must use the same pool, schema and tablePrefix as the backend');
    }
  }

  /** Guarded writes honour `WriteGuard.maxEntries`, counted in the write function: `putData` needs no read first. */
  readonly capsGroupEntries = true;

  /**
   * With a batcher: `write`, `remove` and `flushByTag` honour their `WriteOrder`, and a chain
   * whose writes are issued in one tick (to backends sharing the batcher) runs inside one `batch`
   * statement, each step only if the ones it requires applied. Without a batcher each step
   * would be its own statement anyway, so the frontend is left to order them (false).
   */
  get ordersWrites(): boolean {
    return this.batcher !== undefined;
  }

  /** The locker whose locks unlocked guarded writes check (see {@link PostgresBackendOptions.locker}). */
  get checksLocksOf(): object | undefined {
    return this.locker;
  }

  /**
   * `WriteBatch.mustMatch` and `WriteGuard.copyFrom` are checked and applied in the schema's
   * `write` function, hence in a chain's one `batch` statement; declared only with a batcher,
   * since callers need the chain atomic too (`ordersWrites`).
   */
  get movesGroups(): boolean {
    return this.batcher !== undefined;
  }

  /** `WriteGuard.copyUnlocked` is checked in `write` (schema version 7), so with `movesGroups`. */
  get copiesUnlocked(): boolean {
    return this.batcher !== undefined;
  }

  /** @throws StoreUnavailableException when PostgreSQL fails. */
  async get(id: string): Promise<string | undefined> {
    const rows = await this.run<{ value: string }>('get', this.sql.get, [this.namespace, id, now()]);
    return rows[0]?.value;
  }

  /** One statement for all ids. @throws StoreUnavailableException when PostgreSQL fails. */
  async getMany(ids: readonly string[]): Promise<(string | undefined)[]> {
    if (ids.length === 0) return [];
    const rows = await this.run<{ id: string; value: string }>('getMany', this.sql.getMany, [
      this.namespace,
      [...new Set(ids)],
      now(),
    ]);
    const found = new Map(rows.map((row) => [row.id, row.value]));
    return ids.map((id) => found.get(id));
  }

  /** @throws StoreUnavailableException when PostgreSQL fails. */
  async getByTag(tag: string): Promise<BackendEntry[]> {
    const rows = await this.run<{ id: string; value: string }>('getByTag', this.sql.byTag, [this.namespace, tag, now()]);
    return rows.map((row) => ({ id: row.id, data: row.value }));
  }

  /** @throws StoreUnavailableException when PostgreSQL fails. */
  async has(id: string): Promise<boolean> {
    return (await this.run('has', this.sql.has, [this.namespace, id, now()])).length > 0;
  }

  /**
   * @throws InvalidArgumentException for a bad id, tag, lifetime or data (nothing is stored).
   * @throws StoreUnavailableException when PostgreSQL fails.
   */
  async set(id: string, data: string, tags?: readonly string[], lifetime?: number): Promise<void> {
    await this.write({ sets: [{ id, data, tags: tags ?? NO_TAGS, lifetime }] });
  }

  /**
   * @param order writes this one requires (see `WriteOrder`; applied = a live entry was removed).
   * @throws StoreUnavailableException when PostgreSQL fails.
   */
  async remove(id: string, order?: WriteOrder): Promise<boolean> {
    assertCacheIdentifier(id, 'cache entry identifier');
    const at = now();
    const operation: BatchedOperation = { kind: 'remove', namespace: this.namespace, now: at, key: id };
    const answer = await this.batched(
      'remove',
      operation,
      async () => {
        const rows = await this.query<{ live: boolean }>(this.sql.remove, [this.namespace, id, at]);
        return String(rows[0]?.live === true);
      },
      order,
    );
    return answer === 'true';
  }

  /**
   * One call of the schema's `write` function, one transaction: the guard (its existence and
   * fence, under an advisory lock on its group), `mustExist`, `mustMatch`, the copies of
   * `copyFrom` (under the source group's advisory lock too), the sets, the removes and the
   * guard update apply together, or nothing does. Ids may span groups.
   * @param order writes this one requires (see `WriteOrder`; applied = `'ok'`): with a batcher,
   *   in the same statement when they were issued in the same tick.
   * @throws InvalidArgumentException for a bad id, tag, lifetime, data or fence (nothing is written).
   * @throws StoreUnavailableException when PostgreSQL fails (nothing was written).
   */
  async write(batch: WriteBatch, guard?: WriteGuard, order?: WriteOrder): Promise<WriteResult> {
    const sets = batch.sets ?? NO_WRITES;
    const removes = batch.removes ?? NO_TAGS;
    const mustExist = [...new Set(checkedMustExist(batch.mustExist))];
    const mustMatch = batch.mustMatch ?? NO_MATCHES;
    if (sets.length === 0 && removes.length === 0 && guard === undefined && mustExist.length === 0 && mustMatch.length === 0) {
      return order === undefined
        ? 'ok'
        : runInOrder(
            order,
            async (): Promise<WriteResult> => 'ok',
            () => true,
            'skipped',
          );
    }

    // Validate and encode everything first: a bad entry must not reach the database at all.
    const at = Date.now();
    let guardTags: readonly string[] = NO_TAGS;
    let guardExpires: string | null = null;
    if (guard !== undefined) {
      guardTags = checkedGuard(guard);
      if (guard.unlocked === true && this.locker === undefined) {
        throw new InvalidArgumentException(
          'An unlocked guarded write needs a PostgresBackend created with the `locker` option (its locks are checked in the write).',
        );
      }
      if (guard.lifetime !== undefined) guardExpires = timestamp(expiryAt(guard.id, guard.lifetime, at));
      if (guard.maxEntries !== undefined && !(Number.isSafeInteger(guard.maxEntries) && guard.maxEntries >= 0)) {
        throw new InvalidArgumentException(`WriteGuard.maxEntries must be a whole number >= 0, got ${guard.maxEntries}.`);
      }
      if (guard.copyFrom !== undefined) checkCopyFrom(guard);
      if (guard.copyUnlocked === true && guard.copyFrom !== undefined && this.locker === undefined) {
        throw new InvalidArgumentException(
          'WriteGuard.copyUnlocked needs a PostgresBackend created with the `locker` option (its locks are checked in the write).',
        );
      }
    }
    for (const match of mustMatch) {
      assertCacheIdentifier(match.id, 'cache entry identifier');
      if (typeof match.data !== 'string') {
        throw new InvalidArgumentException(
          `WriteBatch.mustMatch data must be a string, got ${typeof match.data} for "${match.id}".`,
        );
      }
    }
    // The last write of an id wins, as if the sets were applied one after another.
    const byId = new Map<string, { data: string; expires: string | null; tags: readonly string[] }>();
    for (const write of sets) {
      const tags = checkedWrite(write);
      const expiry = expiryAt(write.id, write.lifetime, at);
      byId.delete(write.id);
      byId.set(write.id, { data: write.data, expires: expiry === 0 ? null : timestamp(expiry), tags: [...new Set(tags)] });
    }
    removes.forEach((id) => assertCacheIdentifier(id, 'cache entry identifier'));
    const ids: string[] = [];
    const values: string[] = [];
    const expires: (string | null)[] = [];
    const tagIds: string[] = [];
    const tagTags: string[] = [];
    for (const [id, entry] of byId) {
      ids.push(id);
      values.push(entry.data);
      expires.push(entry.expires);
      for (const tag of entry.tags) {
        tagIds.push(id);
        tagTags.push(tag);
      }
    }
    const write: BatchedWriteArguments = {
      guardId: guard?.id ?? null,
      guardFence: guard === undefined ? null : guard.fence,
      guardValue: guard === undefined ? null : String(guard.fence),
      guardCreate: guard?.create === true,
      guardTags: [...new Set(guardTags)],
      guardLifetime: guard?.lifetime !== undefined,
      guardExpires,
      mustExist,
      ids,
      values,
      expires,
      tagIds,
      tagTags,
      removes: [...new Set(removes)],
      // Storage groups are lock keys: the lock of the guard's group; with copyUnlocked, the
      // source group's (schema version 7 checks it free, drawing no fence).
      lockName:
        guard?.unlocked === true
          ? this.locker!.lockNameOf(guard.id.split('.', 1)[0]!)
          : guard?.copyUnlocked === true && guard.copyFrom !== undefined
            ? this.locker!.lockNameOf(guard.copyFrom)
            : null,
      maxEntries: guard?.maxEntries ?? null,
      uncountedPrefix: guard?.maxEntries === undefined ? null : (guard.uncountedPrefix ?? null),
      mustMatchIds: mustMatch.map((match) => match.id),
      mustMatchValues: mustMatch.map((match) => match.data),
      copyFrom: guard?.copyFrom ?? null,
    };
    const stamp = timestamp(at);
    const operation: BatchedOperation = { kind: 'write', namespace: this.namespace, now: stamp, write };
    const answer = await this.batched(
      'write',
      operation,
      async () => {
        const rows = await this.query<{ result: WriteResult }>(this.sql.write, [
          this.namespace,
          stamp,
          write.guardId,
          write.guardFence,
          write.guardValue,
          write.guardCreate,
          write.guardTags,
          write.guardLifetime,
          write.guardExpires,
          write.mustExist,
          write.ids,
          write.values,
          write.expires,
          write.tagIds,
          write.tagTags,
          write.removes,
          write.lockName,
          write.maxEntries,
          write.uncountedPrefix,
          write.mustMatchIds,
          write.mustMatchValues,
          write.copyFrom,
        ]);
        return rows[0]!.result;
      },
      order,
    );
    return answer as WriteResult;
  }

  /** Removes every entry of this backend's namespace. @throws StoreUnavailableException when PostgreSQL fails. */
  async flush(): Promise<void> {
    await this.run('flush', this.sql.flush, [this.namespace]);
  }

  /**
   * Removes expired carriers of the tag too, but counts only live ones; serialised with guarded
   * writes of the group named like the tag (a session's storage).
   * @param order writes this one requires (see `WriteOrder`; a flush that ran counts as applied,
   *   a skipped one answers 0).
   * @throws StoreUnavailableException when PostgreSQL fails.
   */
  async flushByTag(tag: string, order?: WriteOrder): Promise<number> {
    const at = now();
    // A storage group of this backend's locker: its lock row goes with it (schema version 6).
    const lockName = this.locker === undefined || tag.includes('.') ? null : this.locker.lockNameOf(tag);
    const operation: BatchedOperation = { kind: 'flush', namespace: this.namespace, now: at, key: tag, lockName };
    const answer = await this.batched(
      'flushByTag',
      operation,
      async () => {
        const rows = await this.query<{ removed: number | string }>(this.sql.flushByTag, [this.namespace, tag, at, lockName]);
        return String(rows[0]?.removed ?? 0);
      },
      order,
    );
    return answer === SKIPPED_ANSWER ? 0 : Number(answer);
  }

  /** @throws StoreUnavailableException when PostgreSQL fails. */
  async findIdentifiersByTag(tag: string): Promise<string[]> {
    const rows = await this.run<{ id: string }>('findIdentifiersByTag', this.sql.idsByTag, [this.namespace, tag, now()]);
    return rows.map((row) => row.id);
  }

  /**
   * A keyset page of the tag index: the next `limit` members in byte order after `cursor`
   * (the last id of the page before), expired ones skipped. O(limit); an id is never answered
   * twice in one iteration.
   * @throws InvalidArgumentException for a cursor this backend did not answer.
   * @throws StoreUnavailableException when PostgreSQL fails.
   */
  async findIdentifiersByTagPage(tag: string, cursor: string | undefined, limit: number): Promise<TagPage> {
    const count = Math.max(1, Math.floor(limit));
    if (cursor !== undefined && !CACHE_IDENTIFIER_PATTERN.test(cursor)) {
      throw new InvalidArgumentException(`Invalid tag page cursor "${cursor.slice(0, 80)}".`);
    }
    assertIdentifier(tag, 'cache tag');
    const rows = await this.run<{ id: string; live: boolean }>('findIdentifiersByTagPage', this.sql.tagPage, [
      this.namespace,
      tag,
      now(),
      cursor ?? '',
      count,
    ]);
    const ids = rows.filter((row) => row.live).map((row) => row.id);
    return rows.length < count ? { ids } : { ids, cursor: rows.at(-1)!.id };
  }

  /**
   * Statements of at most 1000 due entries, oldest expiry first, each one transaction that
   * locks with `FOR UPDATE SKIP LOCKED` and deletes what it locked: concurrent collectors
   * share the work instead of waiting. O(expired).
   * @throws InvalidArgumentException for a negative or NaN limit.
   * @throws StoreUnavailableException when PostgreSQL fails (entries answered before were removed).
   */
  async collectGarbage(limit?: number): Promise<BackendEntry[]> {
    const max = Math.floor(gcLimit(limit));
    const collected: BackendEntry[] = [];
    while (collected.length < max) {
      const wanted = Math.min(GC_CHUNK, max - collected.length);
      const rows = await this.run<{ id: string; value: string }>('collectGarbage', this.sql.collect, [
        this.namespace,
        now(),
        wanted,
      ]);
      for (const row of rows) collected.push({ id: row.id, data: row.value });
      if (rows.length < wanted) break;
    }
    return collected;
  }

  /** Owns nothing: the pool was passed in and is ended by its owner. */
  async close(): Promise<void> {}

  private async run<Row>(operation: string, statement: Statement, values: unknown[]): Promise<Row[]> {
    return attemptStore(`postgres ${operation}`, () => this.query<Row>(statement, values));
  }

  private async query<Row>(statement: Statement, values: unknown[]): Promise<Row[]> {
    return rowsOf<Row>(await this.pool.query(statement.with(values, this.prepare)));
  }

  /**
   * A write, remove or flush: through the batcher (with whatever other backends send in this
   * tick, chained to what `order` requires) when there is one, else `alone` once what `order`
   * requires applied. Answers the operation's text answer (see `batch`; `skipped` when a
   * required write did not apply) and settles `order.ticket`.
   */
  private batched(
    operation: string,
    batched: BatchedOperation,
    alone: () => Promise<string>,
    order: WriteOrder | undefined,
  ): Promise<string> {
    const batcher = this.batcher;
    if (batcher !== undefined) return attemptStore(`postgres ${operation}`, () => batcher.submit(batched, alone, order));
    const run = () => attemptStore(`postgres ${operation}`, alone);
    if (order === undefined) return run();
    return runInOrder(order, run, (answer) => batchedOperationApplied(batched.kind, answer), SKIPPED_ANSWER);
  }
}

/** The current time of this process, as a timestamptz parameter. */
function now(): string {
  return timestamp(Date.now());
}

/** Epoch ms as an ISO timestamp (exact to the millisecond, time zone UTC). */
function timestamp(ms: number): string {
  return new Date(ms).toISOString();
}
