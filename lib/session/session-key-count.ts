import { SessionLimitExceededException } from '../errors/session-limit-exceeded.exception.js';
import type { SessionChangeSet } from './session-change-set.js';

/**
 * `maxKeysPerSession` for storing `key`: the session's data keys as they stand (`stored` with
 * the pending `changes` on top; bag entries, starting with `~`, not counted) must leave room for
 * it unless it is one of them already.
 * @throws SessionLimitExceededException when they do not.
 */
export function assertKeyCount(stored: ReadonlyMap<string, string>, changes: SessionChangeSet, key: string, max: number): void {
  const change = changes.valueOf(key);
  if (typeof change === 'string' || (change === undefined && stored.has(key))) return;
  let count = 0;
  for (const existing of stored.keys()) if (!existing.startsWith('~') && changes.valueOf(existing) !== null) count++;
  for (const [changed, value] of changes.data) if (value !== null && !changed.startsWith('~') && !stored.has(changed)) count++;
  if (count >= max) throw SessionLimitExceededException.tooManyKeys(key, max);
}
