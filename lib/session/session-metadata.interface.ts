/**
 * What the metadata cache holds per session, under a digest of its id (never the id). Timestamps are
 * milliseconds since the epoch. The storage id never leaves the server.
 */
export interface SessionMetadata {
  readonly storageId: string;
  readonly createdAt: number;
  readonly lastActivity: number;
  /** Custom tags (without the cache-tag prefix). */
  readonly tags: readonly string[];
  /** Id of the user the session is bound to; absent = anonymous. */
  readonly userId?: string;
  /** A permanent session gets a time-based cookie instead of a browser-session cookie. */
  readonly permanent?: boolean;
  /** Client-address prefix the session is locked to (IP lock); absent = no lock. */
  readonly ipLock?: string;
  /** Per-session inactivity timeout in seconds, overriding the module's `inactivityTimeout`. */
  readonly lifetime?: number;
  /**
   * When the session was last bound to a user (login): the absolute lifetime (`absoluteTimeout`)
   * counts from here, else from `createdAt`.
   */
  readonly boundAt?: number;
  /** When the user last proved who they are: login, or `markAuthenticated()` (re-authentication). */
  readonly authenticatedAt?: number;
  /** The device's user agent (truncated), recorded at login and refreshed with the metadata. */
  readonly userAgent?: string;
  /** The device's address as an IP-lock prefix (e.g. `203.0.113.7`, `2001:db8:0:1::/64`), like `userAgent`. */
  readonly clientAddress?: string;
}

/** The session's own copy of its metadata, which it changes as the API is used (the stored entry's fields are readonly to users). */
export type MutableSessionMetadata = { -readonly [K in keyof SessionMetadata]: SessionMetadata[K] };
