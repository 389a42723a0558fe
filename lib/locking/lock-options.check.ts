import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';

/**
 * Validates a lock ttl and turns it into whole ms (for PX / PEXPIRE, or an interval).
 * @param maximum the largest ttl the engine can store (default: no limit).
 * @throws InvalidArgumentException when `ttl` is not a positive finite number, or above `maximum`.
 */
export function checkTtl(ttl: number, maximum = Number.POSITIVE_INFINITY): number {
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl <= 0) {
    throw new InvalidArgumentException(`Lock options: ttl must be a positive finite number of ms, got ${ttl}.`);
  }
  if (ttl > maximum) {
    throw new InvalidArgumentException(`Lock options: ttl must be at most ${maximum} ms, got ${ttl}.`);
  }
  return Math.ceil(ttl);
}

/** @throws InvalidArgumentException when `waitTimeout` is negative or NaN. */
export function checkWaitTimeout(waitTimeout: number): number {
  if (!(waitTimeout >= 0)) {
    throw new InvalidArgumentException(`Lock options: waitTimeout must be >= 0 ms, got ${waitTimeout}.`);
  }
  return waitTimeout;
}

/** What an `acquire()` under way or to come fails with once a shared locker is closed. */
export function lockerClosedError(): StoreUnavailableException {
  return StoreUnavailableException.create('acquire lock', new Error('the locker was closed'));
}
