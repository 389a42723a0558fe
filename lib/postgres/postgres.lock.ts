import { checkTtl } from '../locking/lock-options.check.js';

/** The largest lock ttl PostgreSQL's interval arithmetic here is given (a 32-bit ms count). */
export const MAX_TTL_MS = 2_147_483_647;
import type { SessionLock } from '../locking/session-locker.interface.js';
import { Statement } from './postgres-client.js';
import type { PostgresNames } from './postgres-names.js';

/** The statements of one locker, built once from the validated names. */
export class LockStatements {
  readonly acquire: Statement;
  readonly release: Statement;
  readonly extend: Statement;
  readonly cancel: Statement;
  readonly abandon: Statement;
  readonly prune: Statement;

  constructor(names: PostgresNames) {
    const locks = names.locks();
    this.acquire = new Statement(
      `SELECT out_fence::text AS fence, out_retry AS retry FROM ${names.fn('lock_acquire')}($1, $2, $3, $4, $5, $6)`,
    );
    this.release = new Statement(`SELECT ${names.fn('lock_release')}($1, $2, $3) AS done`);
    this.extend = new Statement(
      `UPDATE ${locks} l SET expires_at = clock_timestamp() + $3 * interval '1 millisecond'
       WHERE l.name = $1 AND l.token = $2 AND l.expires_at > clock_timestamp() RETURNING 1 AS done`,
    );
    this.cancel = new Statement(`SELECT ${names.fn('lock_cancel')}($1, $2, $3) AS done`);
    this.abandon = new Statement(`SELECT ${names.fn('lock_abandon')}($1, $2, $3, $4) AS done`);
    // Rows of locks free (or expired) for longer than the fence ttl; skips rows in use.
    this.prune = new Statement(
      `DELETE FROM ${locks} l WHERE l.name IN (
         SELECT p.name FROM ${locks} p WHERE p.expires_at < clock_timestamp() - $1 * interval '1 millisecond'
         ORDER BY p.expires_at LIMIT 200 FOR UPDATE SKIP LOCKED)`,
    );
  }
}

/** Runs a locker statement; PostgreSQL errors become `StoreUnavailableException` naming `operation`. */
export type LockQuery = (operation: string, statement: Statement, values: unknown[]) => Promise<unknown[]>;

/** A lock held in PostgreSQL, identified by its random token. */
export class PostgresLock implements SessionLock {
  constructor(
    private readonly run: LockQuery,
    private readonly statements: LockStatements,
    private readonly channel: string,
    /** The lock's name in the table (the locker's prefix and the key). */
    private readonly name: string,
    readonly key: string,
    readonly token: string,
    readonly fence: number,
    private readonly released: () => void,
  ) {}

  async release(): Promise<boolean> {
    const [row] = (await this.run('release lock', this.statements.release, [this.name, this.token, this.channel])) as {
      done: boolean;
    }[];
    if (row?.done === true) this.released();
    return row?.done === true;
  }

  async extend(ttl: number): Promise<boolean> {
    const ms = checkTtl(ttl, MAX_TTL_MS);
    return (await this.run('extend lock', this.statements.extend, [this.name, this.token, ms])).length > 0;
  }
}
