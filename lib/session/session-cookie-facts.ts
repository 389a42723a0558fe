/**
 * What a session reports about its id to the transport that carries it, as facts; the HTTP
 * layer decides from them whether a response sets or expires the cookie (`session-cookie.policy.ts`).
 */
export interface SessionCookieFacts {
  /** The current public id; undefined when no session is started. */
  readonly id: string | undefined;
  /** A commit of this request stored the session under an id its client does not hold (created or renewed). */
  readonly idIssued: boolean;
  /** The next commit will store the session under an id its client does not hold (for headers sent before it). */
  readonly idIssuePending: boolean;
  /** The session was destroyed in this request and no new one has been stored since. */
  readonly destroyed: boolean;
  /** A commit of this request wrote the metadata entry (its last activity moved). */
  readonly metadataWritten: boolean;
  /** The session is permanent: its cookie outlives the browser session. */
  readonly permanent: boolean;
  /**
   * Seconds the session's cookie lives: a permanent session's cookie as long as the session
   * (its inactivity timeout), otherwise the configured `cookie.lifetime`; undefined = until
   * the browser closes. The same number `MetadataBag.getLifetime()` reports.
   */
  readonly cookieLifetime: number | undefined;
}
