import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import { isRedisClusterClient, type RedisLockerClient, type RedisLockerClusterClient } from './redis-client.adapter.js';
import { lockerClosedError } from '../locking/lock-options.check.js';
import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { Sleeper } from '../locking/lock.sleeper.js';

/*
 * How RedisLocker's waiters learn that it is their turn: this process subscribes once per lock
 * key that has waiters here (Pub/Sub on a standalone Redis, sharded Pub/Sub on a cluster, where
 * the channel shares the lock's hash tag), and a message, the token of the waiter whose turn it
 * is, wakes that waiter only. Every waiter also sleeps on a timer, so a lost message or a lost
 * connection costs time, never correctness.
 */

/** Where waiters listen: a standalone client's Pub/Sub, or a cluster's sharded Pub/Sub. */
interface Listening {
  readonly isOpen: boolean;
  subscribe(channel: string, listener: (message: string) => void): Promise<void>;
  unsubscribe(channel: string, listener: (message: string) => void): Promise<void>;
}

/** A cluster's sharded Pub/Sub as {@link Listening}. */
function shardedListening(cluster: RedisLockerClusterClient): Listening {
  return {
    get isOpen() {
      return cluster.isOpen;
    },
    subscribe: (channel, listener) => cluster.sSubscribe(channel, listener),
    unsubscribe: (channel, listener) => cluster.sUnsubscribe(channel, listener),
  };
}

/** This process's subscription to one key's channel, shared by its waiters on that key. */
interface ChannelEntry {
  /** Waiters by token: a message wakes only the one it names. */
  readonly sleepers: Map<string, Sleeper>;
  readonly listener: (message: string) => void;
  readonly ready: Promise<void>;
  /** SUBSCRIBE has been answered: from now on every message published reaches `listener`. */
  subscribed: boolean;
}

/** The wake-up side of RedisLocker: subscriptions, the waiters on them, the Pub/Sub connection. */
export class RedisLockWakeups {
  private readonly givenSubscriber: Listening | undefined;
  private ownedSubscriber: RedisLockerClient | null = null;
  private subscriberReady: Promise<Listening> | null = null;
  private readonly channels = new Map<string, ChannelEntry>();
  private readonly sleepers = new Set<Sleeper>();
  private readonly unsubscribing = new Set<Promise<unknown>>();
  private closing = false;

  /**
   * @param client the locker's client: duplicated for Pub/Sub on first contention, unless
   *   `subscriber` is given or `client` is a cluster (which then serves itself).
   * @throws InvalidArgumentException when `subscriber` does not match the kind of `client`.
   */
  constructor(
    private readonly client: RedisLockerClient | RedisLockerClusterClient,
    subscriber: RedisLockerClient | RedisLockerClusterClient | undefined,
  ) {
    if (isRedisClusterClient(client)) {
      const sharded = subscriber ?? client;
      if (!isRedisClusterClient(sharded)) {
        throw new InvalidArgumentException(
          'RedisLocker: with a cluster `client`, `subscriber` must be a cluster client too (or omitted).',
        );
      }
      this.givenSubscriber = shardedListening(sharded);
    } else {
      if (isRedisClusterClient(subscriber)) {
        throw new InvalidArgumentException('RedisLocker: a cluster `subscriber` needs a cluster `client`.');
      }
      this.givenSubscriber = subscriber;
    }
  }

  /** A sleeper for a new waiter, woken by {@link interrupt} too. */
  sleeper(token: string): Sleeper {
    const sleeper = new Sleeper(token);
    this.sleepers.add(sleeper);
    return sleeper;
  }

  /**
   * Adds `sleeper` to the key's listeners if this process's subscription to `channel` is
   * already in place; answers whether it did.
   */
  join(channel: string, sleeper: Sleeper): boolean {
    const entry = this.channels.get(channel);
    const subscriber = this.givenSubscriber ?? this.ownedSubscriber;
    if (entry === undefined || !entry.subscribed || subscriber === null || !subscriber.isOpen) {
      return false;
    }
    entry.sleepers.set(sleeper.token, sleeper);
    return true;
  }

  /** Listens on `channel` for `sleeper`, subscribing this process if it does not yet. */
  async subscribe(channel: string, sleeper: Sleeper): Promise<void> {
    let entry = this.channels.get(channel);
    if (entry === undefined) {
      const subscriber = await this.subscriber();
      entry = this.channels.get(channel); // another waiter may have subscribed meanwhile
      if (entry === undefined) {
        const sleepers = new Map<string, Sleeper>();
        // The message is the token of the waiter whose turn it is (in this process or another):
        // only that one wakes.
        const listener = (message: string): void => sleepers.get(message)?.signal();
        const created: ChannelEntry = {
          sleepers,
          listener,
          ready: subscriber.subscribe(channel, listener),
          subscribed: false,
        };
        created.ready.then(
          () => {
            created.subscribed = true;
          },
          () => {
            if (this.channels.get(channel) === created) this.channels.delete(channel);
          },
        );
        this.channels.set(channel, created);
        entry = created;
      }
    }
    entry.sleepers.set(sleeper.token, sleeper);
    try {
      await entry.ready;
    } catch (error) {
      entry.sleepers.delete(sleeper.token);
      throw StoreUnavailableException.create('acquire lock', error);
    }
  }

  /** The waiter is done: stops listening for it, and unsubscribes when it was the key's last. */
  leave(channel: string, sleeper: Sleeper): void {
    this.sleepers.delete(sleeper);
    const entry = this.channels.get(channel);
    if (entry?.sleepers.get(sleeper.token) !== sleeper) return;
    entry.sleepers.delete(sleeper.token);
    if (entry.sleepers.size > 0) return;
    this.channels.delete(channel);
    const subscriber = this.givenSubscriber ?? this.ownedSubscriber;
    if (subscriber === null || !subscriber.isOpen) return;
    const done = subscriber.unsubscribe(channel, entry.listener).catch(() => undefined);
    this.unsubscribing.add(done);
    void done.finally(() => this.unsubscribing.delete(done));
  }

  /** Wakes every waiter (the locker is closing: they look at Redis once more and give up). */
  interrupt(): void {
    this.closing = true;
    for (const sleeper of this.sleepers) sleeper.signal();
  }

  /**
   * After the waiters are gone: waits for pending unsubscribes and closes the Pub/Sub
   * connection if it was created here (a given subscriber stays open).
   */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.allSettled([...this.unsubscribing]);
    this.channels.clear();
    const owned = this.ownedSubscriber;
    const ready = this.subscriberReady;
    this.ownedSubscriber = null;
    this.subscriberReady = null;
    if (owned === null || ready === null) return;
    await ready.catch(() => undefined);
    if (!owned.isOpen) return;
    try {
      await owned.close();
    } catch {
      owned.destroy();
    }
  }

  /** The Pub/Sub connection; the locker's own one is created on first contention. */
  private subscriber(): Promise<Listening> {
    if (this.closing) return Promise.reject(lockerClosedError());
    if (this.givenSubscriber !== undefined) return Promise.resolve(this.givenSubscriber);
    const lost = this.ownedSubscriber !== null && !this.ownedSubscriber.isOpen;
    if (lost && this.subscriberReady !== null) {
      // Lost (e.g. no reconnect strategy): start over with a fresh connection.
      this.ownedSubscriber = null;
      this.subscriberReady = null;
      this.channels.clear();
    }
    if (this.subscriberReady === null) {
      // Never a cluster here: a cluster client always serves as `givenSubscriber`.
      const duplicate = (this.client as RedisLockerClient).duplicate();
      // Without a listener an 'error' event would crash the process; failures surface through
      // the failing subscribe, and waiters keep their timer fallback meanwhile.
      duplicate.on('error', () => undefined);
      this.ownedSubscriber = duplicate;
      this.subscriberReady = duplicate.connect().then(
        () => duplicate,
        (error: unknown) => {
          if (this.ownedSubscriber === duplicate) {
            this.ownedSubscriber = null;
            this.subscriberReady = null;
          }
          duplicate.destroy();
          throw StoreUnavailableException.create('acquire lock', error);
        },
      );
    }
    return this.subscriberReady;
  }
}
