import { SessionError } from '../errors/session.error.js';
import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import type { TaggableBackend } from './taggable-backend.interface.js';

/** What {@link instrumentBackend} reports. */
export interface BackendHooks {
  storeError?(part: 'metadata' | 'storage', operation: string): void;
}

/** The locker the backend names (`checksLocksOf`, `ordersAfterLocksOf`) and the wrapper that stands for it. */
export interface LockerStandIn {
  readonly locker: object;
  readonly wrapper: object;
}

/** The backend members that name a locker by identity (the session store compares them with its own). */
const LOCKER_MEMBERS: ReadonlySet<PropertyKey> = new Set(['checksLocksOf', 'ordersAfterLocksOf']);

/**
 * `backend` with failed operations reported (`StoreUnavailableException`, or anything that is
 * not a `SessionError`: a driver error that escaped), by method name. A Proxy: members the
 * backend lacks stay absent (optional methods such as `findIdentifiersByTagPage` are detected by
 * presence), and `instanceof` and `constructor.name` are the backend's own. Where the backend
 * names `standIn.locker` as the locker whose locks it checks or whose commands it follows, it
 * names `standIn.wrapper` (the instrumented locker the session store holds) instead: without
 * that, the store would not recognise its own locker, and measuring would turn off unlocked
 * commits and the reads that share the lock's round trip.
 */
export function instrumentBackend(
  backend: TaggableBackend,
  part: 'metadata' | 'storage',
  hooks: BackendHooks,
  standIn?: LockerStandIn,
): TaggableBackend {
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(backend, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (standIn !== undefined && LOCKER_MEMBERS.has(property) && value === standIn.locker) return standIn.wrapper;
      if (typeof value !== 'function') return value;
      if (property === 'constructor') return value;
      let method = wrapped.get(property);
      if (method === undefined) {
        const fn = value as (...args: unknown[]) => unknown;
        const name = String(property);
        method = (...args: unknown[]): unknown => {
          const result = fn.apply(target, args);
          if (result instanceof Promise) {
            return result.catch((error: unknown) => {
              if (error instanceof StoreUnavailableException || !(error instanceof SessionError)) hooks.storeError?.(part, name);
              throw error;
            });
          }
          return result;
        };
        wrapped.set(property, method);
      }
      return method;
    },
  });
}
