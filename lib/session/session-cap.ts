import { SessionLimitReachedException } from '../errors/session-limit-reached.exception.js';
import type { SessionLock } from '../locking/session-locker.interface.js';
import type { SessionMetadata } from './session-metadata.interface.js';
import type { MetadataKey } from './session-key.js';
import { SessionStore } from './session.store.js';
import { userTag } from './user-tag.js';

/** Ends one of the user's other sessions (a remote session's `destroy('evicted')`). */
export type SessionEvictor = (key: MetadataKey, metadata: SessionMetadata) => Promise<void>;

/**
 * The per-user session cap (`maxSessionsPerUser`, ASVS 7.1.2), applied where a commit binds
 * a session to a user. Counting the user's sessions, evicting or rejecting, and the login's
 * own write happen under one lock per user (key `~user-<digest of the user id>` in the
 * configured locker, so across every app instance sharing it): of any number of parallel
 * logins of one user, each sees the sessions the previous ones stored, and exactly
 * `maxSessionsPerUser` remain. Costs O(sessions of that user); no cost when the cap is off.
 */
export class SessionCap {
  constructor(private readonly store: SessionStore) {}

  /**
   * Admits a login of `userId` by a session stored under `ownKeys` (its current and renewed-away
   * metadata keys; none for a new session), which are not counted. Below the limit, nothing
   * happens; at it, `'evict-oldest'` ends the user's sessions with the oldest login time
   * (`boundAt`, else `createdAt`) through `evict` until one place is free, and `'reject'` throws.
   * Answers the user lock, held until the caller has written the login (release it in any
   * case), or undefined when the cap is off.
   * @throws SessionLimitReachedException (409) under `'reject'` at the limit; the lock is released.
   * @throws LockTimeoutException, StoreUnavailableException, or an eviction's failure.
   */
  async admit(userId: string, ownKeys: readonly string[], evict: SessionEvictor): Promise<SessionLock | undefined> {
    const { maxSessionsPerUser: max, maxSessionsPolicy: policy } = this.store.options;
    if (max <= 0) return undefined;
    const lock = await this.store.lock(`~${userTag(userId)}`);
    try {
      const others = await this.otherSessions(userId, ownKeys);
      if (others.length >= max) {
        if (policy === 'reject') throw SessionLimitReachedException.create(max);
        const oldest = others.sort((a, b) => loginTime(a[1]) - loginTime(b[1]) || a[1].lastActivity - b[1].lastActivity);
        await Promise.all(oldest.slice(0, others.length - max + 1).map(([key, metadata]) => evict(key, metadata)));
      }
      return lock;
    } catch (error) {
      await lock.release().catch(() => false);
      throw error;
    }
  }

  /** The user's live sessions other than `ownKeys`, from the user tag's index (one backend call). */
  private async otherSessions(userId: string, ownKeys: readonly string[]): Promise<Array<[MetadataKey, SessionMetadata]>> {
    const cache = this.store.metadataCache;
    const now = Date.now();
    const sessions: Array<[MetadataKey, SessionMetadata]> = [];
    for (const entry of await cache.getRawByTag(SessionStore.customTag(userTag(userId)))) {
      if (ownKeys.includes(entry.id)) continue;
      const metadata = cache.decode<SessionMetadata>(entry.data);
      if (metadata.userId === userId && !this.store.isExpired(metadata, now)) sessions.push([entry.id as MetadataKey, metadata]);
    }
    return sessions;
  }
}

function loginTime(metadata: SessionMetadata): number {
  return metadata.boundAt ?? metadata.createdAt;
}
