/** A legacy (express-session) session's data as its store kept it: the `cookie` field and the app's keys. */
export type LegacySessionData = Readonly<Record<string, unknown>>;

/**
 * Where legacy sessions are read from during a takeover (`legacy.loader`). `ConnectRedisLoader`
 * reads connect-redis entries; implement this for another express-session store.
 */
export interface LegacySessionLoader {
  /**
   * Reads the legacy session `sid` and removes it, atomically: of two parallel calls for one id,
   * only one may answer its data (the other answers `undefined`), so that two parallel requests
   * with the same legacy cookie cannot both take it over. `undefined` for an unknown id.
   * @throws anything when the store cannot be reached (the request then goes on without a session).
   */
  take(sid: string): Promise<LegacySessionData | undefined>;
  /** Releases what the loader owns (called by `SessionModule` on shutdown). Optional. */
  close?(): Promise<void>;
}
