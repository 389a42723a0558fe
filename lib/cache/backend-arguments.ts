import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { InvalidOptionException } from '../errors/invalid-option.exception.js';
import { assertCacheIdentifier, assertCacheTag } from './identifier.js';
import { lifetimeMs } from './lifetime.js';
import type { BackendWrite, WriteGuard } from './taggable-backend.interface.js';

/*
 * The argument checks every TaggableBackend makes, written once so that the memory, Redis and
 * cache-manager backends reject the same input with the same message.
 */

const NO_TAGS: readonly string[] = Object.freeze([]);

/**
 * The most entries one `collectGarbage(limit)` may hand over: `limit`, or `Infinity` without one.
 * @throws InvalidArgumentException for a negative or NaN limit.
 */
export function gcLimit(limit: number | undefined): number {
  if (limit !== undefined && (typeof limit !== 'number' || Number.isNaN(limit) || limit < 0)) {
    throw new InvalidArgumentException(
      `Invalid garbage collection limit ${String(limit)}: use a number >= 0, or omit it for no limit.`,
    );
  }
  return limit ?? Infinity;
}

/** @throws InvalidArgumentException when an entry's data is not a string. */
export function assertEntryData(id: string, data: unknown): asserts data is string {
  if (typeof data !== 'string') {
    throw InvalidArgumentException.fromStore(`Cannot store cache entry "${id}": its data must be a string, got ${typeof data}.`);
  }
}

/** @throws InvalidArgumentException when a guard's fence is not a number, or its lifetime is not seconds > 0. */
export function assertGuardFence(guard: WriteGuard): void {
  if (typeof guard.fence !== 'number' || Number.isNaN(guard.fence)) {
    throw InvalidArgumentException.fromStore(
      `Invalid fence ${String(guard.fence)} for guard entry "${guard.id}": it must be a number.`,
    );
  }
  // A guard lifetime of 0 would mean "never expires", which no caller of a lifetime means.
  if (guard.lifetime !== undefined && lifetimeMs(guard.id, guard.lifetime) === 0) {
    throw InvalidArgumentException.fromStore(`Invalid lifetime 0 for guard entry "${guard.id}": use seconds > 0, or omit it.`);
  }
}

/**
 * Checks one entry of a `write()` batch (id, data, tags) for a backend that cannot trust its
 * caller to have validated them; answers its tags.
 * @throws InvalidArgumentException naming the bad part.
 */
export function checkedWrite(write: BackendWrite): readonly string[] {
  assertCacheIdentifier(write.id, 'cache entry identifier');
  assertEntryData(write.id, write.data);
  const tags = write.tags ?? NO_TAGS;
  tags.forEach((tag) => assertCacheTag(tag));
  return tags;
}

/**
 * Checks a write guard (id, fence, tags), like {@link checkedWrite}; answers its tags.
 * @throws InvalidArgumentException naming the bad part.
 */
export function checkedGuard(guard: WriteGuard): readonly string[] {
  assertCacheIdentifier(guard.id, 'cache entry identifier');
  assertGuardFence(guard);
  const tags = guard.tags ?? NO_TAGS;
  tags.forEach((tag) => assertCacheTag(tag));
  return tags;
}

/**
 * Checks the `mustExist` ids of a `write()` batch, like {@link checkedWrite}; answers them.
 * @throws InvalidArgumentException naming the bad id.
 */
export function checkedMustExist(ids: readonly string[] | undefined): readonly string[] {
  const list = ids ?? NO_TAGS;
  list.forEach((id) => assertCacheIdentifier(id, 'cache entry identifier'));
  return list;
}

/**
 * A backend option given in seconds (a safety TTL margin, a bucket width).
 * @throws InvalidOptionException naming `option` when it is not a finite number >= 0 (> 0 unless `zeroAllowed`).
 */
export function secondsOption(option: string, value: number, zeroAllowed: boolean): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (!zeroAllowed && value === 0)) {
    throw InvalidOptionException.create(
      option,
      `must be a number of seconds ${zeroAllowed ? '>= 0' : '> 0'}, got ${String(value)}`,
    );
  }
  return value;
}
