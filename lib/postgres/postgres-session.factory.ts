import { InvalidOptionException } from '../errors/invalid-option.exception.js';
import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import type { PostgresPool } from './postgres-client.js';
import { PostgresNames, type PostgresSchemaOptions } from './postgres-names.js';
import { PostgresBackend } from './postgres.backend.js';
import { PostgresLocker, type PostgresLockerOptions } from './postgres.locker.js';
import { migratePostgresSchema, type PostgresMigrationResult } from './postgres.migration.js';
import { PostgresWriteBatcher } from './postgres-write.batcher.js';

/** Options of {@link createPostgresSessionStores}. Give exactly one of `connectionString` and `pool`. */
export interface PostgresSessionStoresOptions extends PostgresSchemaOptions {
  /**
   * `postgres://[user[:password]@]host[:port]/database[?...]`: a `pg.Pool` is created with the
   * settings below and owned (ended by `close()`, which `SessionModule` calls on shutdown).
   */
  connectionString?: string;
  /**
   * A `pg.Pool`, owned by you: never ended here. Its own settings (`connectionTimeoutMillis`,
   * `statement_timeout`, `query_timeout`) decide how long a request waits while PostgreSQL is
   * unreachable or slow, and it needs an `'error'` listener (node-postgres crashes the process on
   * an idle connection's error without one).
   */
  pool?: PostgresPool;
  /**
   * Namespace prefix: metadata entries live in namespace `${prefix}m`, data entries in
   * `${prefix}s`, lock names start with `${prefix}l:`. Several applications can share one schema
   * with different prefixes.
   * @default 'sess:'
   */
  prefix?: string;
  /**
   * With `connectionString`: milliseconds a statement may run (`statement_timeout`, enforced by
   * the server, which rolls the statement back) before the operation fails with
   * `StoreUnavailableException` (the request answers 503). The client gives up 500 ms later
   * (`query_timeout`) should the server not answer at all. `0` = no deadline.
   * @default 2000
   */
  commandTimeout?: number;
  /**
   * With `connectionString`: milliseconds to wait for a connection (a new one, or a free one of
   * the pool) before the operation fails.
   * @default 5000
   */
  connectTimeout?: number;
  /** With `connectionString`: most connections the pool opens. @default 10 */
  maxConnections?: number;
  /**
   * With `connectionString`: further `pg.Pool` options (TLS, `application_name`, ...). The
   * settings above override the same ones here.
   */
  poolOptions?: Record<string, unknown>;
  /** Named prepared statements (see `PostgresBackendOptions.preparedStatements`). @default true */
  preparedStatements?: boolean;
  /** Locker settings: `waiterTtl`, `fenceTtl` (see `PostgresLockerOptions`). */
  locker?: Pick<PostgresLockerOptions, 'waiterTtl' | 'fenceTtl'>;
}

/** What {@link createPostgresSessionStores} answers: pass its backends and locker to `SessionModule`. */
export interface PostgresSessionStores {
  readonly metadataBackend: PostgresBackend;
  readonly storageBackend: PostgresBackend;
  readonly locker: PostgresLocker;
  /** The pool in use (the one passed in, or the one created from `connectionString`). */
  readonly pool: PostgresPool;
  /**
   * Creates or upgrades the tables and functions in `schema` (see `migratePostgresSchema`).
   * Explicit on purpose: call it at boot, or apply `postgresSchemaSql()` with your own migrations.
   */
  migrate(): Promise<PostgresMigrationResult>;
  /**
   * Closes the locker and, if the pool was created from `connectionString`, ends the pool.
   * Idempotent; the locker's own `close()` (called by `SessionModule` on shutdown) does the same.
   */
  close(): Promise<void>;
}

const DEFAULT_PREFIX = 'sess:';
const DEFAULT_COMMAND_TIMEOUT = 2000;
const DEFAULT_CONNECT_TIMEOUT = 5000;
const DEFAULT_MAX_CONNECTIONS = 10;
/** The client-side deadline is this much longer than the server's, so the server usually cancels first. */
const CLIENT_DEADLINE_SLACK = 500;
const PREFIX_PATTERN = /^[A-Za-z0-9_%&\-.:]{0,60}$/;

/**
 * A PostgresLocker that also ends the pool it runs on, once, after the locker itself has closed:
 * `SessionModule` closes both backends and the locker in parallel on shutdown, and only the
 * locker has work to finish (pending waiters, its listening connection) before the pool may end.
 */
class PoolOwningPostgresLocker extends PostgresLocker {
  private ended: Promise<void> | undefined;

  constructor(
    options: PostgresLockerOptions,
    private readonly endPool: () => Promise<void>,
  ) {
    super(options);
  }

  override close(): Promise<void> {
    this.ended ??= super.close().finally(() => this.endPool());
    return this.ended;
  }
}

/**
 * PostgreSQL backends and locker for `SessionModule`, on one `pg` pool:
 *
 * ```ts
 * SessionModule.forRootAsync({
 *   useFactory: async () => {
 *     const stores = await createPostgresSessionStores({ connectionString: process.env.DATABASE_URL });
 *     await stores.migrate();
 *     return { metadataBackend: stores.metadataBackend, storageBackend: stores.storageBackend, locker: stores.locker };
 *   },
 * })
 * ```
 *
 * With `connectionString` the pool is created with settings for many app instances: a statement
 * that runs longer than `commandTimeout` is cancelled by the server (nothing half-written), a
 * connection that cannot be had within `connectTimeout` fails the operation, broken
 * connections are dropped and replaced on the next use (the pool recovers by itself when
 * PostgreSQL is back), and their errors never crash the process. `pg` is loaded only when this
 * function runs with `connectionString`.
 *
 * @throws InvalidOptionException for bad options (also when not exactly one of connectionString and pool is given).
 * @throws StoreUnavailableException when PostgreSQL cannot be reached at boot; the message names
 *   the server with the password replaced by `***`.
 */
export async function createPostgresSessionStores(options: PostgresSessionStoresOptions): Promise<PostgresSessionStores> {
  const { connectionString, pool: given } =
    (options as (Omit<PostgresSessionStoresOptions, 'pool'> & { pool?: PostgresPool | null }) | undefined) ?? {};
  if ([connectionString, given].filter((o) => o !== undefined).length !== 1) {
    throw InvalidOptionException.create(
      'postgres',
      'needs exactly one of `connectionString` (a postgres:// URL) and `pool` (a pg.Pool)',
    );
  }
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  if (typeof prefix !== 'string' || !PREFIX_PATTERN.test(prefix)) {
    throw InvalidOptionException.create(
      'postgres.prefix',
      `must be 0-60 characters of A-Z, a-z, 0-9, "_", "%", "&", "-", "." and ":", got ${JSON.stringify(prefix)}`,
    );
  }
  const schema: PostgresSchemaOptions = { schema: options.schema, tablePrefix: options.tablePrefix };
  new PostgresNames(schema); // validates schema and tablePrefix before anything connects
  const commandTimeout = durationOption('postgres.commandTimeout', options.commandTimeout, DEFAULT_COMMAND_TIMEOUT);
  const connectTimeout = durationOption('postgres.connectTimeout', options.connectTimeout, DEFAULT_CONNECT_TIMEOUT);
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  if (!Number.isSafeInteger(maxConnections) || maxConnections < 2) {
    // One connection is the locker's listening one for good.
    throw InvalidOptionException.create('postgres.maxConnections', `must be a whole number >= 2, got ${String(maxConnections)}`);
  }

  let pool: PostgresPool;
  let endOwned: (() => Promise<void>) | undefined;
  if (given !== undefined) {
    if (typeof given?.query !== 'function' || typeof given.connect !== 'function') {
      throw InvalidOptionException.create('postgres.pool', 'must be a pg.Pool (query() and connect())');
    }
    pool = given;
  } else {
    if (typeof connectionString !== 'string' || connectionString.length === 0) {
      throw InvalidOptionException.create(
        'postgres.connectionString',
        `must be a postgres:// URL, got ${typeof connectionString}`,
      );
    }
    const created = await createPool(connectionString, {
      ...options.poolOptions,
      connectionString,
      connectionTimeoutMillis: connectTimeout,
      max: maxConnections,
      ...(commandTimeout > 0 ? { statement_timeout: commandTimeout, query_timeout: commandTimeout + CLIENT_DEADLINE_SLACK } : {}),
    });
    pool = created;
    let ended: Promise<void> | undefined;
    endOwned = () => (ended ??= created.end().catch(() => undefined));
  }

  const preparedStatements = options.preparedStatements;
  const lockerOptions: PostgresLockerOptions = { ...options.locker, ...schema, pool, prefix: `${prefix}l:`, preparedStatements };
  try {
    // One batcher for both: a commit's metadata and storage writes issued in one tick (a new
    // session's; a login's whole chain of dependent steps) become one statement, one
    // transaction, one WAL flush.
    const batcher = new PostgresWriteBatcher({ ...schema, pool, preparedStatements });
    const metadataBackend = new PostgresBackend({ ...schema, pool, namespace: `${prefix}m`, preparedStatements, batcher });
    const locker =
      endOwned !== undefined ? new PoolOwningPostgresLocker(lockerOptions, endOwned) : new PostgresLocker(lockerOptions);
    // Storage ids are the lock keys: an unlocked commit checks the lock in its write.
    const storageBackend = new PostgresBackend({
      ...schema,
      pool,
      namespace: `${prefix}s`,
      preparedStatements,
      locker,
      batcher,
    });
    return {
      metadataBackend,
      storageBackend,
      locker,
      pool,
      migrate: () => migratePostgresSchema(pool, schema),
      close: () => locker.close(),
    };
  } catch (error) {
    await endOwned?.();
    throw error;
  }
}

/** A pool from `pg`, checked with one round trip; its connection errors never reach the process. */
async function createPool(connectionString: string, config: Record<string, unknown>): Promise<PostgresPool> {
  let Pool: new (config: Record<string, unknown>) => PostgresPool & { on(event: 'error', listener: () => void): unknown };
  try {
    // Loaded here, not at the top: `pg` is an optional peer dependency.
    ({ Pool } = ((await import('pg')) as unknown as { default: { Pool: typeof Pool } }).default);
  } catch (error) {
    throw InvalidOptionException.create(
      'postgres.connectionString',
      `needs the "pg" package (node-postgres): npm install pg (${(error as Error).message})`,
    );
  }
  const pool = new Pool(config);
  // An idle connection that breaks (PostgreSQL restarted) emits 'error' on the pool: without a
  // listener the process would crash. The pool drops it; the next statement opens a new one.
  pool.on('error', () => undefined);
  try {
    await pool.query({ text: 'SELECT 1' });
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw StoreUnavailableException.atBoot(`connect to ${redactConnectionString(connectionString)}`, error);
  }
  return pool;
}

/** A connection string with its password (if any) replaced by `***`. */
export function redactConnectionString(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    parsed.searchParams.delete('password');
    return parsed.toString();
  } catch {
    return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
  }
}

function durationOption(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw InvalidOptionException.create(name, `must be a number of milliseconds >= 0, got ${String(value)}`);
  }
  return value;
}
