import { describe, expect, it, jest } from '@jest/globals';
import { InvalidArgumentException } from '../../lib/errors/invalid-argument.exception.js';
import { LockTimeoutException } from '../../lib/errors/lock-timeout.exception.js';
import { StoreUnavailableException } from '../../lib/errors/store-unavailable.exception.js';
import { MemoryLocker } from '../../lib/locking/memory.locker.js';
import type { SessionLock } from '../../lib/locking/session-locker.interface.js';
import { lockerContract } from '../contract/locker.contract.js';
import { fakeOnlyDate } from '../support/fake-date.js';

lockerContract('MemoryLocker', async () => {
  const locker = new MemoryLocker();
  return { locker, cleanup: () => locker.close() };
});

describe('MemoryLocker', () => {
  const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

  it('keeps no per-key state once nothing is held or awaited', async () => {
    const locker = new MemoryLocker();
    const locks = await Promise.all(
      Array.from({ length: 100 }, (_, i) => locker.acquire(`k${i}`, { waitTimeout: 0, ttl: 1000 })),
    );
    expect(locker.size).toBe(100);
    await Promise.all(locks.map((lock) => lock.release()));
    expect(locker.size).toBe(0);

    // Contended, with a waiter that times out and one that is served.
    const holder = await locker.acquire('k', { waitTimeout: 0, ttl: 1000 });
    const quitter = locker.acquire('k', { waitTimeout: 20, ttl: 1000 }).catch((e: unknown) => e);
    const served = locker.acquire('k', { waitTimeout: 1000, ttl: 1000 });
    expect(await quitter).toBeInstanceOf(LockTimeoutException);
    await holder.release();
    await (await served).release();
    expect(locker.size).toBe(0);

    // Expired and handed to a waiter, then released.
    await locker.acquire('e', { waitTimeout: 0, ttl: 20 });
    await (await locker.acquire('e', { waitTimeout: 1000, ttl: 1000 })).release();
    expect(locker.size).toBe(0);
    await locker.close();
  });

  it('serves many waiters in strict arrival order', async () => {
    const locker = new MemoryLocker();
    const holder = await locker.acquire('k', { waitTimeout: 0, ttl: 1000 });
    const order: number[] = [];
    const all = Array.from({ length: 50 }, (_, i) =>
      locker.acquire('k', { waitTimeout: 1000, ttl: 1000 }).then(async (lock) => {
        order.push(i);
        await lock.release();
      }),
    );
    await holder.release();
    await Promise.all(all);
    expect(order).toEqual(Array.from({ length: 50 }, (_, i) => i));
    await locker.close();
  });

  it('hands over directly: a newcomer cannot barge in ahead of a waiter at release', async () => {
    const locker = new MemoryLocker();
    const holder = await locker.acquire('k', { waitTimeout: 0, ttl: 1000 });
    const waiter = locker.acquire('k', { waitTimeout: 1000, ttl: 1000 });
    await holder.release();
    await expect(locker.acquire('k', { waitTimeout: 0, ttl: 1000 })).rejects.toBeInstanceOf(LockTimeoutException);
    await (await waiter).release();
    await locker.close();
  });

  it('serves the queue before a newcomer when an expired lock was not collected yet', async () => {
    const locker = new MemoryLocker();
    await locker.acquire('k', { waitTimeout: 0, ttl: 30 });
    const first = locker.acquire('k', { waitTimeout: 1000, ttl: 1000 });
    // Block the event loop past the expiry so the expiry timer cannot run first.
    const until = Date.now() + 50;
    while (Date.now() < until) {
      /* busy on purpose */
    }
    await expect(locker.acquire('k', { waitTimeout: 0, ttl: 1000 })).rejects.toBeInstanceOf(LockTimeoutException);
    await (await first).release();
    await locker.close();
  });

  it('fences keep growing after a key was forgotten, one counter for all keys', async () => {
    const locker = new MemoryLocker();
    const a1 = await locker.acquire('a', { waitTimeout: 0, ttl: 1000 });
    await a1.release();
    const b = await locker.acquire('b', { waitTimeout: 0, ttl: 1000 });
    await b.release();
    expect(locker.size).toBe(0);
    const a2 = await locker.acquire('a', { waitTimeout: 0, ttl: 1000 });
    expect(b.fence).toBeGreaterThan(a1.fence);
    expect(a2.fence).toBeGreaterThan(b.fence);
    await locker.close();
  });

  it('waits forever with waitTimeout Infinity, arming no wait timer', async () => {
    const locker = new MemoryLocker();
    const holder = await locker.acquire('k', { waitTimeout: 0, ttl: 1000 });
    const waiter = locker.acquire('k', { waitTimeout: Infinity, ttl: 1000 });
    await sleep(20);
    await holder.release();
    await (await waiter).release();
    await locker.close();
  });

  it('a shortened ttl via extend() hands over at the new, earlier time', async () => {
    const locker = new MemoryLocker();
    const holder = await locker.acquire('k', { waitTimeout: 0, ttl: 5000 });
    const started = Date.now();
    const waiter = locker.acquire('k', { waitTimeout: 2000, ttl: 1000 });
    await sleep(5);
    await expect(holder.extend(40)).resolves.toBe(true);
    await (await waiter).release();
    expect(Date.now() - started).toBeLessThan(500);
    await locker.close();
  });

  it('a new locker (a restarted process) hands out fences above those of the one before', async () => {
    // Stores may outlive the process (a shared cache-manager store): their write guards keep
    // the old locker's fences, which a fresh counter starting at 1 would never pass.
    const before = new MemoryLocker();
    let last = 0;
    for (let i = 0; i < 50; i++) {
      const lock = await before.acquire(`k${i % 3}`, { waitTimeout: 0, ttl: 1000 });
      last = lock.fence;
      await lock.release();
    }
    await before.close();
    await new Promise<void>((resolve) => setTimeout(resolve, 2)); // the restart takes time
    const after = new MemoryLocker();
    const lock = await after.acquire('k0', { waitTimeout: 0, ttl: 1000 });
    expect(lock.fence).toBeGreaterThan(last);
    expect(Number.isSafeInteger(lock.fence)).toBe(true);
    await lock.release();
    await after.close();
  });

  it('fences keep rising while the wall clock stands still or steps back', async () => {
    const locker = new MemoryLocker();
    fakeOnlyDate(Date.now());
    try {
      const fences: number[] = [];
      for (let i = 0; i < 5; i++) {
        const lock = await locker.acquire(`k${i}`, { waitTimeout: 0, ttl: 1000 });
        fences.push(lock.fence);
        await lock.release();
        if (i === 2) jest.setSystemTime(Date.now() - 60_000);
      }
      for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThan(fences[i - 1]!);
    } finally {
      jest.useRealTimers();
      await locker.close();
    }
  });

  it('rejects invalid options with InvalidArgumentException', async () => {
    const locker = new MemoryLocker();
    for (const ttl of [0, -1, NaN, Infinity]) {
      await expect(locker.acquire('k', { waitTimeout: 0, ttl })).rejects.toBeInstanceOf(InvalidArgumentException);
    }
    await expect(locker.acquire('k', { waitTimeout: -1, ttl: 1000 })).rejects.toBeInstanceOf(InvalidArgumentException);
    await expect(locker.acquire('k', { waitTimeout: NaN, ttl: 1000 })).rejects.toBeInstanceOf(InvalidArgumentException);
    const lock = await locker.acquire('k', { waitTimeout: 0, ttl: 1000 });
    await expect(lock.extend(0)).rejects.toBeInstanceOf(InvalidArgumentException);
    expect(locker.size).toBe(1);
    await lock.release();
    expect(locker.size).toBe(0);
    await locker.close();
  });

  it('after close(): acquire fails, held locks answer false, close is idempotent', async () => {
    const locker = new MemoryLocker();
    const lock: SessionLock = await locker.acquire('k', { waitTimeout: 0, ttl: 1000 });
    await locker.close();
    await locker.close();
    await expect(locker.acquire('k', { waitTimeout: 0, ttl: 1000 })).rejects.toBeInstanceOf(StoreUnavailableException);
    await expect(lock.release()).resolves.toBe(false);
    await expect(lock.extend(1000)).resolves.toBe(false);
    expect(locker.size).toBe(0);
  });
});
