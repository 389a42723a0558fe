import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';

/**
 * A cache lifetime in seconds as whole milliseconds (0 = never expires), with the same rules
 * for every backend: seconds > 0, or 0/undefined for no expiry. Whole milliseconds keep stored
 * expiry headers and expiry indexes integral.
 * @throws InvalidArgumentException naming the entry for a negative, NaN or infinite lifetime.
 */
export function lifetimeMs(id: string, lifetime: number | undefined): number {
  if (lifetime === undefined || lifetime === 0) return 0;
  if (typeof lifetime !== 'number' || !(lifetime > 0) || lifetime === Infinity) {
    throw InvalidArgumentException.fromStore(
      `Invalid lifetime ${String(lifetime)} for cache entry "${id}": use seconds > 0, or 0 for no expiry.`,
    );
  }
  return Math.max(1, Math.round(lifetime * 1000));
}

/**
 * Epoch ms at which an entry given `lifetime` seconds at `now` expires; 0 = never.
 * @throws InvalidArgumentException as {@link lifetimeMs}.
 */
export function expiryAt(id: string, lifetime: number | undefined, now: number): number {
  const ms = lifetimeMs(id, lifetime);
  return ms === 0 ? 0 : now + ms;
}
