import { createHash } from 'node:crypto';

/**
 * The session tag that marks a user's sessions. User ids can hold any characters, tags only
 * a safe few, so the tag carries a hash of the id (which also keeps ids out of cache keys).
 */
export function userTag(userId: string): string {
  return 'user-' + createHash('sha256').update(userId).digest('base64url');
}
