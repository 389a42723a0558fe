import { createHash } from 'node:crypto';

/*
 * What the PostgreSQL engine needs of node-postgres (`pg`), as structural types: a `pg.Pool`
 * fits them, and the engine's declarations name no type of `pg`, so a consumer type-checks
 * without `@types/pg`.
 */

/** One parameterised statement. `name` makes node-postgres prepare it once per connection. */
export interface PostgresQuery {
  readonly text: string;
  readonly values?: unknown[];
  readonly name?: string;
  /** Client-side deadline (ms) of this statement, overriding the pool's `query_timeout` (node-postgres). */
  readonly query_timeout?: number;
}

/** What a statement answers. */
export interface PostgresResult {
  readonly rows: unknown[];
  readonly rowCount: number | null;
}

/** A `pg.Pool`, a `pg.Client` or a `pg.PoolClient`: anything that runs a statement. */
export interface PostgresQueryable {
  query(query: PostgresQuery): Promise<PostgresResult>;
}

/** A LISTEN message. */
export interface PostgresNotification {
  readonly channel: string;
  readonly payload?: string;
}

/** A client checked out of a pool (`pg.PoolClient`). */
export interface PostgresPoolClient extends PostgresQueryable {
  query(query: PostgresQuery | string): Promise<PostgresResult>;
  /** Back to the pool; `true` or an error destroys the connection instead. */
  release(destroy?: boolean | Error): void;
  on(event: 'notification', listener: (message: PostgresNotification) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  removeListener(event: 'notification', listener: (message: PostgresNotification) => void): unknown;
  removeListener(event: 'error', listener: (error: Error) => void): unknown;
}

/** A `pg.Pool`: runs statements on pooled connections and lends out a connection. */
export interface PostgresPool extends PostgresQueryable {
  connect(): Promise<PostgresPoolClient>;
  end(): Promise<void>;
}

/**
 * A statement of the engine, with a stable name derived from its text, so that node-postgres
 * prepares it once per connection (parse and plan once, then only bind and execute).
 */
export class Statement {
  private readonly name: string;

  constructor(readonly text: string) {
    this.name = `nest_session_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
  }

  /** The statement with these values; `prepare: false` sends it unnamed (e.g. behind PgBouncer in transaction mode). */
  with(values: unknown[], prepare: boolean): PostgresQuery {
    return prepare ? { name: this.name, text: this.text, values } : { text: this.text, values };
  }
}

/** Rows of a result, typed by the caller (rows come from statements of this engine only). */
export function rowsOf<Row>(result: PostgresResult): Row[] {
  return result.rows as Row[];
}
