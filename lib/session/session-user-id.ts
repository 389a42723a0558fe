import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';

/** Longest user id accepted: it becomes part of a cache tag, so it must stay bounded. */
const MAX_USER_ID_LENGTH = 1024;

/**
 * Answers `userId` when it is a non-empty string of at most 1024 characters; the one check
 * behind `Session.bindToUser` and the `SessionManager` user lookups.
 * @throws InvalidArgumentException otherwise.
 */
export function checkUserId(userId: string): string {
  if (typeof userId !== 'string' || userId.length === 0 || userId.length > MAX_USER_ID_LENGTH) {
    throw new InvalidArgumentException(`A user id must be a non-empty string of at most ${MAX_USER_ID_LENGTH} characters.`);
  }
  return userId;
}
