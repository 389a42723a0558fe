/**
 * A registrable bag of session data with its own storage entry (Symfony's
 * `SessionBagInterface`). A bag is created fresh for every request, loaded lazily the first
 * time it is used, and written at commit only if what it would store changed.
 */
export interface SessionBagInterface {
  /** Name used with `session.getBag(name)`. */
  getName(): string;
  /** Key of the bag's entry in the storage cache (1-200 characters of `A-Z a-z 0-9 _ - . :`). */
  getStorageKey(): string;
  /** Called once per request with the stored data (`undefined` when nothing is stored). */
  initialize(data: unknown): void;
  /** Empties the bag and answers what it held. */
  clear(): unknown;
  /** What to store now; `undefined` stores nothing (an empty bag has no entry). */
  getStorableData(): unknown;
  /**
   * Optional: called at commit, under the session lock, when another request changed the
   * stored data since this bag was initialized; apply this request's changes onto `fresh`
   * so concurrent requests lose nothing. Without it, the last writer wins.
   */
  merge?(fresh: unknown): void;
}

/** Creates a fresh bag instance for each request. */
export type SessionBagFactory = () => SessionBagInterface;
