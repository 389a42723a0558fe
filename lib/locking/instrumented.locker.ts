import { LockTimeoutException } from '../errors/lock-timeout.exception.js';
import { SessionError } from '../errors/session.error.js';
import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import type { SessionLocker } from './session-locker.interface.js';

/** What {@link instrumentLocker} reports. */
export interface LockerHooks {
  lockAcquired?(waitMs: number): void;
  lockTimedOut?(waitMs: number): void;
  storeError?(part: 'locker', operation: string): void;
}

/**
 * `locker` with its `acquire` measured: wait time, timeouts (`LockTimeoutException`) and
 * failures of the locker itself. Internal keys (`~gc`, `~health`: they never are session lock
 * keys) are not counted as session locks. A Proxy, so every other member (and `instanceof`,
 * `constructor.name`) stays the locker's own.
 */
export function instrumentLocker(locker: SessionLocker, hooks: LockerHooks): SessionLocker {
  const acquire: SessionLocker['acquire'] = async (key, options) => {
    const started = performance.now();
    try {
      const lock = await locker.acquire(key, options);
      if (!key.startsWith('~')) hooks.lockAcquired?.(performance.now() - started);
      return lock;
    } catch (error) {
      if (error instanceof LockTimeoutException) {
        if (!key.startsWith('~')) hooks.lockTimedOut?.(performance.now() - started);
      } else if (error instanceof StoreUnavailableException || !(error instanceof SessionError)) {
        hooks.storeError?.('locker', 'acquire');
      }
      throw error;
    }
  };
  return new Proxy(locker, {
    get(target, property, receiver) {
      if (property === 'acquire') return acquire;
      const value: unknown = Reflect.get(target, property, receiver);
      if (property === 'constructor') return value;
      // Bound to the target: class members with private fields refuse a Proxy as `this`.
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}
