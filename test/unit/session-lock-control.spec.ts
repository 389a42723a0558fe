import { describe, expect, it } from '@jest/globals';
import { LockException } from '../../lib/errors/lock.exception.js';
import type { SessionLock } from '../../lib/locking/session-locker.interface.js';
import { SessionLockControl } from '../../lib/session/session-lock-control.js';

function fakeLock(): SessionLock & { released: number } {
  const lock = {
    fence: 1,
    released: 0,
    release: async () => {
      lock.released += 1;
      return true;
    },
  };
  return lock as unknown as SessionLock & { released: number };
}

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (error: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('SessionLockControl', () => {
  it('starts unlocked and idle', () => {
    const control = new SessionLockControl();
    expect(control.getState()).toBe('unlocked');
    expect(control.isIdle()).toBe(true);
    expect(() => control.assertNotPending('save the session')).not.toThrow();
  });

  it('is pending while the lock is awaited, and refuses operations meanwhile', async () => {
    const control = new SessionLockControl();
    const granted = deferred<SessionLock>();
    const acquiring = control.acquire(granted.promise);
    expect(control.getState()).toBe('pending');
    expect(control.isIdle()).toBe(false);
    expect(() => control.assertNotPending('save the session')).toThrow(LockException);
    const lock = fakeLock();
    granted.resolve(lock);
    await acquiring;
    expect(control.getState()).toBe('locked');
    expect(control.held).toBe(lock);
  });

  it('goes back to unlocked when the lock cannot be had', async () => {
    const control = new SessionLockControl();
    await expect(control.acquire(Promise.reject(new Error('timeout')))).rejects.toThrow('timeout');
    expect(control.getState()).toBe('unlocked');
    expect(control.held).toBeUndefined();
  });

  it('release() releases the held lock once and unlocks', async () => {
    const control = new SessionLockControl();
    const lock = fakeLock();
    await control.acquire(Promise.resolve(lock));
    await control.release();
    await control.release();
    expect(lock.released).toBe(1);
    expect(control.getState()).toBe('unlocked');
    expect(control.isIdle()).toBe(true);
  });

  it('settle() waits for a pending lock so that it can be released (unlock while pending)', async () => {
    const control = new SessionLockControl();
    const granted = deferred<SessionLock>();
    const acquiring = control.acquire(granted.promise);
    const settling = control.settle();
    const lock = fakeLock();
    granted.resolve(lock);
    await settling;
    await control.release();
    await acquiring;
    expect(lock.released).toBe(1);
  });

  it('detach() hands the lock over without releasing it', async () => {
    const control = new SessionLockControl();
    const lock = fakeLock();
    await control.acquire(Promise.resolve(lock));
    expect(control.detach()).toBe(lock);
    expect(lock.released).toBe(0);
    expect(control.getState()).toBe('unlocked');
  });
});
