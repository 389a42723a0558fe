import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { LockTimeoutException } from '../../lib/errors/lock-timeout.exception.js';
import { StoreUnavailableException } from '../../lib/errors/store-unavailable.exception.js';
import type { SessionLock, SessionLocker } from '../../lib/locking/session-locker.interface.js';

export interface LockerUnderTest {
  locker: SessionLocker;
  /** Closes the locker and whatever the factory opened for it. */
  cleanup: () => Promise<void>;
  /**
   * Makes the locker's store forget what it remembers of `key`'s fences, as the expiry of a
   * per-key counter would (Redis: deletes its fence counter). Omitted when nothing expires.
   */
  forgetFences?: (key: string) => Promise<void>;
}

/**
 * Behaviour every `SessionLocker` must show: mutual exclusion, a typed error instead of a hang,
 * release and extend by the token's holder only, fences that never go backwards. Runs in real time, because
 * a Redis-backed locker cannot be driven by fake timers: waits are kept to tens or a few
 * hundred ms, and time bounds carry a margin for a busy CI machine.
 */
export function lockerContract(name: string, factory: () => Promise<LockerUnderTest>): void {
  describe(`SessionLocker contract: ${name}`, () => {
    /** Slack for timer and round-trip latency on a loaded machine. */
    const MARGIN = 150;
    let subject: LockerUnderTest;
    let locker: SessionLocker;
    let keyCount = 0;
    const run = randomBytes(3).toString('hex');
    /** A key no other test touches, so leftovers of one test cannot affect another. */
    const freshKey = (): string => `k-${run}-${++keyCount}`;

    beforeEach(async () => {
      subject = await factory();
      locker = subject.locker;
    });

    afterEach(async () => {
      await subject.cleanup();
    });

    it('acquires and releases; the lock describes itself', async () => {
      const key = freshKey();
      const lock = await locker.acquire(key, { waitTimeout: 0, ttl: 1000 });
      expect(lock.key).toBe(key);
      expect(typeof lock.token).toBe('string');
      expect(lock.token.length).toBeGreaterThanOrEqual(16);
      expect(Number.isSafeInteger(lock.fence)).toBe(true);
      await expect(lock.release()).resolves.toBe(true);
      const again = await locker.acquire(key, { waitTimeout: 0, ttl: 1000 });
      expect(again.token).not.toBe(lock.token);
      await expect(again.release()).resolves.toBe(true);
    });

    it('gives every holder a different random token', async () => {
      const tokens = new Set<string>();
      for (let i = 0; i < 5; i++) {
        const lock = await locker.acquire(freshKey(), { waitTimeout: 0, ttl: 1000 });
        tokens.add(lock.token);
        await lock.release();
      }
      expect(tokens.size).toBe(5);
    });

    it('release is idempotent, also when called concurrently', async () => {
      const key = freshKey();
      const lock = await locker.acquire(key, { waitTimeout: 0, ttl: 1000 });
      const answers = await Promise.all([lock.release(), lock.release()]);
      expect(answers.sort()).toEqual([false, true]);
      await expect(lock.release()).resolves.toBe(false);
      await expect(lock.extend(1000)).resolves.toBe(false);
      // A later holder is not disturbed by the old lock's calls.
      const next = await locker.acquire(key, { waitTimeout: 0, ttl: 1000 });
      await expect(lock.release()).resolves.toBe(false);
      await expectHeld(key);
      await expect(next.release()).resolves.toBe(true);
    });

    it('keeps concurrent critical sections on one key from overlapping', async () => {
      const key = freshKey();
      let counter = 0;
      let inside = 0;
      let maxInside = 0;
      const workers = Array.from({ length: 12 }, async () => {
        const lock = await locker.acquire(key, { waitTimeout: 5000, ttl: 5000 });
        try {
          inside++;
          maxInside = Math.max(maxInside, inside);
          const read = counter;
          await sleep(2);
          await Promise.resolve();
          counter = read + 1;
          inside--;
        } finally {
          await lock.release();
        }
      });
      await Promise.all(workers);
      expect(counter).toBe(12);
      expect(maxInside).toBe(1);
    });

    it('serves waiters first come, first served', async () => {
      const key = freshKey();
      const holder = await locker.acquire(key, { waitTimeout: 0, ttl: 5000 });
      const order: number[] = [];
      const waiters: Promise<void>[] = [];
      for (let i = 0; i < 5; i++) {
        waiters.push(
          locker.acquire(key, { waitTimeout: 3000, ttl: 5000 }).then(async (lock) => {
            order.push(i);
            await sleep(5);
            await lock.release();
          }),
        );
        // Each waiter reaches the queue before the next one asks.
        await sleep(25);
      }
      // A latecomer arriving while the queue drains must not overtake it.
      await holder.release();
      waiters.push(
        locker.acquire(key, { waitTimeout: 3000, ttl: 5000 }).then(async (lock) => {
          order.push(5);
          await lock.release();
        }),
      );
      await Promise.all(waiters);
      expect(order).toEqual([0, 1, 2, 3, 4, 5]);
    });

    it('times out with LockTimeoutException in time and leaves no waiter behind', async () => {
      const key = freshKey();
      const holder = await locker.acquire(key, { waitTimeout: 0, ttl: 5000 });
      const started = Date.now();
      const error = await locker.acquire(key, { waitTimeout: 120, ttl: 1000 }).catch((e: unknown) => e);
      const waited = Date.now() - started;
      expect(error).toBeInstanceOf(LockTimeoutException);
      expect((error as Error).message).toContain('120 ms');
      expect(waited).toBeGreaterThanOrEqual(110);
      expect(waited).toBeLessThan(120 + MARGIN);
      await holder.release();
      // Immediately available: the timed-out waiter holds no place in the queue.
      const next = await locker.acquire(key, { waitTimeout: 0, ttl: 1000 });
      await expect(next.release()).resolves.toBe(true);
    });

    it('waitTimeout 0 tries once: fails at once when held, succeeds when free', async () => {
      const key = freshKey();
      const holder = await locker.acquire(key, { waitTimeout: 0, ttl: 5000 });
      const started = Date.now();
      await expect(locker.acquire(key, { waitTimeout: 0, ttl: 1000 })).rejects.toBeInstanceOf(LockTimeoutException);
      expect(Date.now() - started).toBeLessThan(MARGIN);
      await holder.release();
      const lock = await locker.acquire(key, { waitTimeout: 0, ttl: 1000 });
      await lock.release();
    });

    it('a waiter that timed out in the middle of the queue does not hold up the next', async () => {
      const key = freshKey();
      const holder = await locker.acquire(key, { waitTimeout: 0, ttl: 5000 });
      const quitter = locker.acquire(key, { waitTimeout: 60, ttl: 1000 }).catch((e: unknown) => e);
      await sleep(20);
      const patient = locker.acquire(key, { waitTimeout: 3000, ttl: 1000 });
      expect(await quitter).toBeInstanceOf(LockTimeoutException);
      const released = Date.now();
      await holder.release();
      const lock = await patient;
      expect(Date.now() - released).toBeLessThan(MARGIN);
      await lock.release();
    });

    it('hands an expired lock to a waiter without any release', async () => {
      const key = freshKey();
      const started = Date.now();
      await locker.acquire(key, { waitTimeout: 0, ttl: 120 });
      const lock = await locker.acquire(key, { waitTimeout: 3000, ttl: 1000 });
      const waited = Date.now() - started;
      expect(waited).toBeGreaterThanOrEqual(110);
      // Woken by its own timer at the holder's expiry: one that missed it would wait out its 3000
      // ms. Not MARGIN: the retry after expiry took 401 ms once on CI's loaded 3-node cluster.
      expect(waited).toBeLessThan(120 + 6 * MARGIN);
      await lock.release();
    });

    it('an expired lock is free for a newcomer', async () => {
      const key = freshKey();
      const old = await locker.acquire(key, { waitTimeout: 0, ttl: 50 });
      await sleep(80);
      const lock = await locker.acquire(key, { waitTimeout: 0, ttl: 1000 });
      expect(lock.fence).toBeGreaterThan(old.fence);
      await expect(old.release()).resolves.toBe(false);
      await expect(lock.release()).resolves.toBe(true);
    });

    it("an expired holder's release() and extend() answer false, new holder unharmed", async () => {
      const key = freshKey();
      const old = await locker.acquire(key, { waitTimeout: 0, ttl: 80 });
      const current = await locker.acquire(key, { waitTimeout: 3000, ttl: 2000 });
      await expect(old.release()).resolves.toBe(false);
      await expect(old.extend(5000)).resolves.toBe(false);
      await expectHeld(key);
      await expect(current.extend(2000)).resolves.toBe(true);
      await expect(current.release()).resolves.toBe(true);
    });

    it('an expired lock that nobody took cannot be extended or released', async () => {
      const key = freshKey();
      const lock = await locker.acquire(key, { waitTimeout: 0, ttl: 50 });
      await sleep(80);
      await expect(lock.extend(1000)).resolves.toBe(false);
      await expect(lock.release()).resolves.toBe(false);
      const next = await locker.acquire(key, { waitTimeout: 0, ttl: 1000 });
      await next.release();
    });

    it('extend keeps the lock held past its original ttl', async () => {
      const key = freshKey();
      // Margins of hundreds of ms: on a loaded CI machine a 50 ms sleep can take over 100 ms.
      const lock = await locker.acquire(key, { waitTimeout: 0, ttl: 600 });
      await sleep(100);
      await expect(lock.extend(1500)).resolves.toBe(true);
      await sleep(700); // past the original 600 ms
      await expectHeld(key);
      // A waiter still gets it once the extended ttl runs out.
      const next = await locker.acquire(key, { waitTimeout: 5000, ttl: 1000 });
      await expect(lock.release()).resolves.toBe(false);
      await next.release();
    });

    it('fences strictly increase across acquisitions, also after the key went idle', async () => {
      const key = freshKey();
      const other = freshKey();
      const fences: number[] = [];
      for (let i = 0; i < 3; i++) {
        const lock = await locker.acquire(key, { waitTimeout: 0, ttl: 1000 });
        fences.push(lock.fence);
        await lock.release();
      }
      // Idle for a while, other keys in use meanwhile.
      const elsewhere = await locker.acquire(other, { waitTimeout: 0, ttl: 1000 });
      await elsewhere.release();
      await sleep(30);
      // Through an expiry and a hand-over.
      const expiring = await locker.acquire(key, { waitTimeout: 0, ttl: 50 });
      fences.push(expiring.fence);
      const waiter = await locker.acquire(key, { waitTimeout: 3000, ttl: 1000 });
      fences.push(waiter.fence);
      await waiter.release();
      const last = await locker.acquire(key, { waitTimeout: 0, ttl: 1000 });
      fences.push(last.fence);
      await last.release();
      for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThan(fences[i - 1]!);
    });

    it("a fence is greater than every earlier fence, for any key, even after the key's fence counter expired", async () => {
      // A write guard that never expires compares fences of different keys (regenerate(true)
      // moves data to a new storage id) and of long ago: they must form one rising sequence.
      const keys = [freshKey(), freshKey(), freshKey()];
      const fences: number[] = [];
      const take = async (key: string): Promise<void> => {
        const lock = await locker.acquire(key, { waitTimeout: 0, ttl: 1000 });
        fences.push(lock.fence);
        expect(Number.isSafeInteger(lock.fence)).toBe(true);
        await lock.release();
      };
      for (let round = 0; round < 3; round++) for (const key of keys) await take(key);
      await subject.forgetFences?.(keys[0]!);
      await take(keys[0]!);
      await take(freshKey());
      await subject.forgetFences?.(keys[1]!);
      await take(keys[1]!);
      await take(keys[2]!);
      for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThan(fences[i - 1]!);
    });

    it('locks on different keys do not block each other', async () => {
      const a = await locker.acquire(freshKey(), { waitTimeout: 0, ttl: 5000 });
      const b = await locker.acquire(freshKey(), { waitTimeout: 0, ttl: 5000 });
      await expect(a.release()).resolves.toBe(true);
      await expect(b.release()).resolves.toBe(true);
    });

    it('close() fails pending waiters', async () => {
      if (locker.close === undefined) return;
      const key = freshKey();
      await locker.acquire(key, { waitTimeout: 0, ttl: 5000 });
      const pending = locker.acquire(key, { waitTimeout: 5000, ttl: 1000 }).catch((e: unknown) => e);
      await sleep(30);
      const started = Date.now();
      await locker.close();
      const error = await pending;
      expect(error).toBeInstanceOf(StoreUnavailableException);
      // Long before the waiter's 5 s timeout; close() also ends the Pub/Sub connection, which a
      // loaded CI machine took 670 ms to do once, so not the 150 ms margin of the other cases.
      expect(Date.now() - started).toBeLessThan(2000);
    });

    /** Asserts that somebody holds `key` right now (a single attempt fails). */
    async function expectHeld(key: string): Promise<void> {
      let probe: SessionLock | undefined;
      try {
        probe = await locker.acquire(key, { waitTimeout: 0, ttl: 1000 });
      } catch (error) {
        expect(error).toBeInstanceOf(LockTimeoutException);
        return;
      }
      await probe.release();
      throw new Error(`expected ${key} to be held, but it was free`);
    }
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
