import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import { Sleeper } from '../locking/lock.sleeper.js';
import type { PostgresNotification, PostgresPool, PostgresPoolClient } from './postgres-client.js';

/*
 * How PostgresLocker's waiters learn that it is their turn: one connection per locker,
 * checked out of the pool for good, LISTENs on the locker's channel; the lock functions
 * NOTIFY the token of the waiter whose turn it is (at commit), and that waiter alone looks
 * again. Every waiter also sleeps on a timer, so a lost notification or a broken listening
 * connection costs time, never correctness.
 */

/** The listening connection of one locker and the waiters of this process, by token. */
export class PostgresLockWakeups {
  private readonly sleepers = new Map<string, Sleeper>();
  private client: PostgresPoolClient | null = null;
  private connecting: Promise<void> | null = null;
  private closed = false;

  constructor(
    private readonly pool: PostgresPool,
    private readonly channel: string,
  ) {}

  /** A sleeper for the waiter with this token. */
  sleeper(token: string): Sleeper {
    return new Sleeper(token);
  }

  /** Registers a waiter; answers whether the channel is listened to already. */
  join(sleeper: Sleeper): boolean {
    this.sleepers.set(sleeper.token, sleeper);
    return this.client !== null;
  }

  leave(sleeper: Sleeper): void {
    if (this.sleepers.get(sleeper.token) === sleeper) this.sleepers.delete(sleeper.token);
  }

  /**
   * Makes sure the channel is listened to (connecting the listening connection the first
   * time, or again after it broke).
   * @throws StoreUnavailableException when PostgreSQL cannot be reached, or after `close()`.
   */
  async listen(): Promise<void> {
    if (this.closed) throw StoreUnavailableException.create('acquire lock', new Error('the locker was closed'));
    if (this.client !== null) return;
    this.connecting ??= this.connect().finally(() => (this.connecting = null));
    await this.connecting;
  }

  /** Wakes every waiter of this process (they look again, and see the locker closing). */
  interrupt(): void {
    for (const sleeper of this.sleepers.values()) sleeper.signal();
  }

  /** Gives the listening connection up (destroyed, not returned: it is in LISTEN state). Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    this.interrupt();
    await this.connecting?.catch(() => undefined);
    this.drop();
  }

  private async connect(): Promise<void> {
    let client: PostgresPoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw StoreUnavailableException.create('listen for lock releases', error);
    }
    client.on('notification', this.onNotification);
    client.on('error', this.onError);
    try {
      // The channel is an identifier of [a-z0-9_] only (see PostgresNames.channel).
      await client.query(`LISTEN "${this.channel}"`);
    } catch (error) {
      this.discard(client);
      throw StoreUnavailableException.create('listen for lock releases', error);
    }
    if (this.closed) {
      this.discard(client);
      return;
    }
    this.client = client;
  }

  private readonly onNotification = (message: PostgresNotification): void => {
    if (message.channel !== this.channel || message.payload === undefined) return;
    this.sleepers.get(message.payload)?.signal();
  };

  /** The connection broke: waiters look again now (and listen again before they sleep). */
  private readonly onError = (): void => {
    this.drop();
    this.interrupt();
  };

  private drop(): void {
    const client = this.client;
    this.client = null;
    if (client !== null) this.discard(client);
  }

  private discard(client: PostgresPoolClient): void {
    client.removeListener('notification', this.onNotification);
    client.removeListener('error', this.onError);
    // A broken connection may emit 'error' again later: keep a listener so it cannot crash the process.
    client.on('error', () => undefined);
    try {
      client.release(true);
    } catch {
      // Already released by a failing connection.
    }
  }
}
