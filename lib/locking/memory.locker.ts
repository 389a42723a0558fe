import { randomUUID } from 'node:crypto';
import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { LockTimeoutException } from '../errors/lock-timeout.exception.js';
import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import type { LockOptions, SessionLock, SessionLocker } from './session-locker.interface.js';

/** setTimeout fires at once for longer delays; longer waits are re-armed in steps. */
const MAX_TIMER_MS = 2_147_483_647;
/** How often expired locks that nobody waits for (holder gone without release) are dropped. */
const SWEEP_INTERVAL_MS = 10_000;

/** One queued `acquire()`; a node of its key's doubly linked FIFO (O(1) removal on timeout). */
class Waiter {
  prev: Waiter | null = null;
  next: Waiter | null = null;
  timer: NodeJS.Timeout | null = null;
  constructor(
    readonly resolve: (lock: MemoryLock) => void,
    readonly reject: (error: Error) => void,
    readonly ttl: number,
    readonly waitTimeout: number,
    /** performance.now() after which the waiter gives up. */
    readonly deadline: number,
  ) {}
}

/**
 * Lock state of one key. Exists only while the key is held (possibly by an expired holder not
 * yet collected): a release with nobody waiting deletes it, so memory follows the held keys.
 */
class KeyState {
  holder: MemoryLock | null = null;
  head: Waiter | null = null;
  tail: Waiter | null = null;
  /** Armed only while someone waits: hands the lock over when the holder's ttl runs out. */
  expiryTimer: NodeJS.Timeout | null = null;
  constructor(readonly key: string) {}
}

class MemoryLock implements SessionLock {
  constructor(
    private readonly table: LockTable,
    readonly state: KeyState,
    readonly key: string,
    readonly token: string,
    readonly fence: number,
    /** performance.now() at which the lock expires by itself. */
    public expiresAt: number,
  ) {}

  release(): Promise<boolean> {
    return Promise.resolve(this.table.release(this));
  }

  // async: a throw from the table (a bad ttl) becomes a rejection.
  async extend(ttl: number): Promise<boolean> {
    return this.table.extend(this, ttl);
  }
}

/** The bookkeeping behind {@link MemoryLocker}, kept apart so locks can call into it. */
class LockTable {
  readonly states = new Map<string, KeyState>();
  /** The last fence handed out, for any key: one sequence for the whole locker. */
  private fence = 0;
  private sweepTimer: NodeJS.Timeout | null = null;
  closed = false;

  acquire(key: string, options: LockOptions): Promise<SessionLock> {
    const { ttl, waitTimeout } = options;
    if (!isPositiveFinite(ttl)) {
      return Promise.reject(invalid(`ttl must be a positive finite number of ms, got ${ttl}`));
    }
    if (!(waitTimeout >= 0)) {
      return Promise.reject(invalid(`waitTimeout must be >= 0 ms, got ${waitTimeout}`));
    }
    if (this.closed) return Promise.reject(closedError());

    const now = performance.now();
    let state = this.states.get(key);
    if (state === undefined) {
      // Uncontended path: no timer, just a map entry; expiry is checked lazily.
      state = new KeyState(key);
      this.states.set(key, state);
      this.startSweeper();
      return Promise.resolve(this.grant(state, ttl, now));
    }
    const holder = state.holder;
    if (holder !== null && holder.expiresAt <= now) {
      // Expired, and its timer (if any) has not run yet: serve the queue first, keeping FIFO.
      this.handOff(state, now);
      if (state.holder === null) {
        this.states.set(key, state);
        this.startSweeper();
        return Promise.resolve(this.grant(state, ttl, now));
      }
    }
    if (waitTimeout === 0) return Promise.reject(LockTimeoutException.create(waitTimeout));

    return new Promise<SessionLock>((resolve, reject) => {
      const waiter = new Waiter(resolve, reject, ttl, waitTimeout, now + waitTimeout);
      enqueue(state, waiter);
      if (Number.isFinite(waitTimeout)) this.armWaitTimer(state, waiter, waitTimeout);
      this.armExpiryTimer(state, now);
    });
  }

  release(lock: MemoryLock): boolean {
    const state = lock.state;
    if (state.holder !== lock) return false;
    const now = performance.now();
    const wasValid = lock.expiresAt > now;
    this.handOff(state, now);
    return wasValid;
  }

  extend(lock: MemoryLock, ttl: number): boolean {
    if (!isPositiveFinite(ttl)) {
      throw invalid(`ttl must be a positive finite number of ms, got ${ttl}`);
    }
    const state = lock.state;
    if (state.holder !== lock) return false;
    const now = performance.now();
    if (lock.expiresAt <= now) {
      this.handOff(state, now);
      return false;
    }
    lock.expiresAt = now + ttl;
    if (state.expiryTimer !== null) {
      // The expiry may have moved earlier as well as later: re-arm for the new time.
      clearTimeout(state.expiryTimer);
      state.expiryTimer = null;
      this.armExpiryTimer(state, now);
    }
    return true;
  }

  close(): void {
    this.closed = true;
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    const error = closedError();
    for (const state of this.states.values()) {
      if (state.expiryTimer !== null) clearTimeout(state.expiryTimer);
      state.expiryTimer = null;
      state.holder = null;
      for (let w = state.head; w !== null; w = w.next) {
        if (w.timer !== null) clearTimeout(w.timer);
        w.reject(error);
      }
      state.head = state.tail = null;
    }
    this.states.clear();
  }

  drawFenceIfFree(key: string): number | undefined {
    if (this.closed) return undefined;
    const state = this.states.get(key);
    if (state !== undefined) {
      const now = performance.now();
      // An expired holder nobody collected yet: the queue is served first, as an acquire would.
      if (state.holder !== null && state.holder.expiresAt <= now) this.handOff(state, now);
      if (state.holder !== null || state.head !== null) return undefined;
    }
    this.fence = Math.max(this.fence + 1, Math.floor(Date.now()) * 1000);
    return this.fence;
  }

  private grant(state: KeyState, ttl: number, now: number): MemoryLock {
    // Clock part: a new locker (a restarted process, whose stores may have outlived it) still
    // starts above the fences of the one before; counter part: strictly increasing meanwhile,
    // also when Date.now() stands still or steps back. Microseconds stay below 2^53 until 2255.
    this.fence = Math.max(this.fence + 1, Math.floor(Date.now()) * 1000);
    const lock = new MemoryLock(this, state, state.key, randomUUID(), this.fence, now + ttl);
    state.holder = lock;
    return lock;
  }

  /** The holder left (released or expired): the first waiter gets the lock, else drop the key. */
  private handOff(state: KeyState, now: number): void {
    state.holder = null;
    if (state.expiryTimer !== null) clearTimeout(state.expiryTimer);
    state.expiryTimer = null;
    const waiter = state.head;
    if (waiter === null) {
      if (this.states.get(state.key) === state) this.states.delete(state.key);
      return;
    }
    unlink(state, waiter);
    if (waiter.timer !== null) clearTimeout(waiter.timer);
    waiter.resolve(this.grant(state, waiter.ttl, now));
    this.armExpiryTimer(state, now);
  }

  private armExpiryTimer(state: KeyState, now: number): void {
    const holder = state.holder;
    if (state.expiryTimer !== null || state.head === null || holder === null) return;
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, Math.ceil(holder.expiresAt - now)));
    state.expiryTimer = setTimeout(() => {
      state.expiryTimer = null;
      if (state.holder !== holder) return;
      // Timers can fire a little early against performance.now(): re-arm until really expired.
      const at = performance.now();
      if (holder.expiresAt <= at) this.handOff(state, at);
      else this.armExpiryTimer(state, at);
    }, delay);
  }

  private armWaitTimer(state: KeyState, waiter: Waiter, delay: number): void {
    waiter.timer = setTimeout(
      () => {
        waiter.timer = null;
        const now = performance.now();
        if (now < waiter.deadline - 0.5) {
          this.armWaitTimer(state, waiter, Math.ceil(waiter.deadline - now));
          return;
        }
        unlink(state, waiter);
        if (state.head === null && state.expiryTimer !== null) {
          clearTimeout(state.expiryTimer);
          state.expiryTimer = null;
        }
        waiter.reject(LockTimeoutException.create(waiter.waitTimeout));
      },
      Math.min(MAX_TIMER_MS, delay),
    );
  }

  /**
   * Drops keys whose holder expired without releasing and that nobody waits for, so a crashed
   * request cannot leak state. Runs only while some key is held; unref'd, so it never keeps the
   * process alive.
   */
  private startSweeper(): void {
    if (this.sweepTimer !== null) return;
    this.sweepTimer = setInterval(() => {
      const now = performance.now();
      for (const state of this.states.values()) {
        if (state.head === null && state.holder !== null && state.holder.expiresAt <= now) {
          this.handOff(state, now);
        }
      }
      if (this.states.size === 0 && this.sweepTimer !== null) {
        clearInterval(this.sweepTimer);
        this.sweepTimer = null;
      }
    }, SWEEP_INTERVAL_MS);
    this.sweepTimer.unref();
  }
}

/**
 * In-process session locker: per-key mutual exclusion for a single Node process.
 *
 * - Fair: waiters for a key are served strictly first come, first served; a released or
 *   expired lock passes directly to the first waiter, so newcomers cannot barge in.
 * - No polling: waiters sleep on promises that a release (or the expiry of the holder's ttl)
 *   resolves.
 * - Fences are max(last fence + 1, wall clock in microseconds), one sequence for the whole
 *   locker: each exceeds every fence handed out before for any key while the locker lives, and
 *   a later locker (a restarted process writing to stores that outlived the old one) starts
 *   above the old one's as long as the system clock did not step back across the restart.
 * - Memory stays bounded: a key's state is deleted as soon as it is neither held nor awaited
 *   (expired locks nobody released are collected by an unref'd sweep every 10 s).
 */
// Also fits the cache layer's `UnlockedFences` (structurally: locking/ does not import cache/).
export class MemoryLocker implements SessionLocker {
  private readonly table = new LockTable();

  /**
   * For a `MemoryBackend` created with this locker (option `locks`): a fresh fence for a write
   * made without the lock, when nobody holds or awaits the lock of `key` (an expired holder counts
   * as gone); undefined when somebody does, or after `close()`. Synchronous: the backend checks
   * and writes in one step.
   */
  drawFenceIfFree(key: string): number | undefined {
    return this.table.drawFenceIfFree(key);
  }

  /**
   * Takes the lock for `key`, waiting in FIFO order behind earlier callers.
   * @throws LockTimeoutException when the lock was not handed over within `waitTimeout` ms
   *   (the waiter leaves the queue). `waitTimeout: 0` means try once; `Infinity` waits forever.
   * @throws InvalidArgumentException when `ttl` is not a positive finite number or
   *   `waitTimeout` is negative.
   * @throws StoreUnavailableException after `close()`.
   */
  acquire(key: string, options: LockOptions): Promise<SessionLock> {
    return this.table.acquire(key, options);
  }

  /** Number of keys that are held or awaited (diagnostics; 0 when nothing is locked). */
  get size(): number {
    return this.table.states.size;
  }

  /**
   * Clears every timer and fails pending waiters with `StoreUnavailableException`. Locks still
   * held become invalid (their `release()` answers false). Idempotent.
   */
  close(): Promise<void> {
    this.table.close();
    return Promise.resolve();
  }
}

function enqueue(state: KeyState, waiter: Waiter): void {
  waiter.prev = state.tail;
  if (state.tail === null) state.head = waiter;
  else state.tail.next = waiter;
  state.tail = waiter;
}

function unlink(state: KeyState, waiter: Waiter): void {
  if (waiter.prev === null) state.head = waiter.next;
  else waiter.prev.next = waiter.next;
  if (waiter.next === null) state.tail = waiter.prev;
  else waiter.next.prev = waiter.prev;
  waiter.prev = waiter.next = null;
}

function isPositiveFinite(value: number): boolean {
  return typeof value === 'number' && Number.isFinite(value) && value > 0;
}

function invalid(message: string): InvalidArgumentException {
  return new InvalidArgumentException(`Lock options: ${message}.`);
}

function closedError(): StoreUnavailableException {
  return StoreUnavailableException.create('acquire lock', new Error('the locker was closed'));
}
