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
  /**
   * Optional, for a bag that records its changes for `merge`: called after a commit wrote this
   * bag's entry, with the value written (decoded; `undefined` when the entry was removed), which
   * is what is stored now. Take it as the new base and forget the changes it holds, so that a
   * later `merge` does not apply them again (a message added twice, a value another request
   * set meanwhile overwritten by an old one); keep the changes made while the commit was in
   * flight (the difference between the bag's current value and `stored`). Not called for a bag
   * that was not written. Without it, the bag keeps its record of changes until the request ends.
   */
  committed?(stored: unknown): void;
}

/** Creates a fresh bag instance for each request. */
export type SessionBagFactory = () => SessionBagInterface;
