/**
 * Per-key mutual exclusion for sessions, with tokens, expiry and fencing numbers: a lock that
 * cannot be had in time is a typed error, not a hang; only the token's holder can release or
 * extend it; fences never go backwards, across keys and whatever expires; waiters are woken on
 * release instead of polling, with a timeout fallback because expiry wakes nobody. Every
 * implementation must pass the contract suite in `test/contract/locker.contract.ts`.
 */
export interface SessionLocker {
  /**
   * Waits (without busy polling, first come first served) until the lock for `key` is free,
   * then takes it.
   * @throws LockTimeoutException when the lock could not be had within `options.waitTimeout`.
   * @throws StoreUnavailableException when the lock store cannot be reached.
   */
  acquire(key: string, options: LockOptions): Promise<SessionLock>;

  /** Releases timers and connections the locker owns. Pending waiters fail. */
  close?(): Promise<void>;
}

export interface LockOptions {
  /** Milliseconds to wait for the lock before giving up with `LockTimeoutException`. */
  readonly waitTimeout: number;
  /** Milliseconds after which a held lock expires by itself if it is not released or extended. */
  readonly ttl: number;
}

/** A held lock. */
export interface SessionLock {
  readonly key: string;
  /** Random token that identifies this holder; release and extend compare it. */
  readonly token: string;
  /**
   * Fencing number, a safe integer: strictly greater than every fence handed out earlier for
   * any key (MemoryLocker: by it; RedisLocker: by any locker on the same Redis), whatever
   * expired since. A write guard that never expires compares it with fences of other keys
   * (`regenerate(true)` moves data to a new storage id under the old key's lock) and of long
   * ago. Implementations may rely on a clock that does not go back; they say so.
   */
  readonly fence: number;
  /**
   * Optional: true when the lock was taken by the very command `acquire()` sent before it
   * returned its promise. Together with a backend whose `ordersAfterLocksOf` is this locker
   * (one ordered connection), reads sent right after `acquire()` returned ran under the lock,
   * in the same round trip. Absent or false: nothing is known about such reads.
   */
  readonly immediate?: boolean;
  /** Releases the lock if still held by this token; answers whether it was. Idempotent. */
  release(): Promise<boolean>;
  /** Pushes the expiry to `ttl` ms from now if still held; answers whether it was. */
  extend(ttl: number): Promise<boolean>;
}

/** Injection token (and type) for the configured locker. */
export const SessionLocker = Symbol('SessionLocker');
