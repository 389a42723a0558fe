import type { WriteOrder } from './write-ticket.js';

export type { WriteOrder } from './write-ticket.js';

/**
 * A cache backend that knows tags and lifetimes but nothing about sessions (Flow's
 * `TaggableBackendInterface`). Identifiers and tags are already validated by the frontend
 * (see `cache/identifier.ts`); data is an opaque string produced by the serializer.
 *
 * Every implementation must pass the contract suite in `test/contract/backend.contract.ts`.
 *
 * Cost rules, so that the library scales to any number of sessions: every operation costs what
 * it touches, never the total number of entries. `collectGarbage` is O(expired) (an expiry index), tag look-ups are
 * O(matches) (a tag index), and an expired entry is invisible to every read even before
 * garbage collection has run.
 *
 * Slot groups (for Redis Cluster): the group of an identifier is the text before its first
 * `.`; the group of a tag is the whole tag. Callers that need atomic multi-key writes (`write`
 * with a guard) keep all ids of the batch and the guard in one group and tag them with that
 * group, so that a backend may put them into one cluster slot.
 */
export interface TaggableBackend {
  /** Short name for logs and errors, e.g. `memory`, `redis`. */
  readonly name: string;

  /** The data of a live entry, or `undefined` if it is missing or expired. */
  get(id: string): Promise<string | undefined>;

  /**
   * Optional, for in-process backends: `get` answered synchronously, so that a request that
   * reads its session from memory costs no promise chain. Same answers and errors as `get`.
   */
  getSync?(id: string): string | undefined;
  /** `get` for many ids in one round trip; the result is aligned with `ids`. */
  getMany(ids: readonly string[]): Promise<(string | undefined)[]>;

  /** All live entries carrying `tag`, in one round trip. O(matches). */
  getByTag(tag: string): Promise<BackendEntry[]>;

  /** Whether a live entry exists. */
  has(id: string): Promise<boolean>;

  /**
   * Stores an entry, replacing data, tags and lifetime of an existing one.
   * @param lifetime seconds until the entry expires; `0` or omitted = never.
   */
  set(id: string, data: string, tags?: readonly string[], lifetime?: number): Promise<void>;

  /**
   * Removes an entry and its tag memberships; answers whether it existed.
   * @param order earlier writes this one requires (only for backends with `ordersWrites`;
   *   the frontend handles it for the others). "Applied" means the entry existed.
   */
  remove(id: string, order?: WriteOrder): Promise<boolean>;

  /**
   * Applies `sets` and `removes` together: atomically where the backend can (memory; Redis for
   * the ids, tag set and guard of the guard's group, with index upkeep in other slots pipelined
   * beside it), in one round trip. With a `guard`, the batch is applied only if the guard allows it:
   * - the guard entry must exist (unless `guard.create`, which creates it),
   * - its stored fence must not be greater than `guard.fence`;
   * on success the guard entry's data becomes `String(guard.fence)` (keeping its tags, or
   * `guard.tags` when created), and its lifetime becomes `guard.lifetime` when given.
   * With `batch.mustExist`, every id listed must be a live entry, else nothing is written and
   * the answer is `'missing'` (checked in the same atomic step as the guard). Answers `'ok'`,
   * or why nothing was written.
   * @param order earlier writes this one requires (only for backends with `ordersWrites`;
   *   the frontend handles it for the others). "Applied" means the answer `'ok'`.
   */
  write(batch: WriteBatch, guard?: WriteGuard, order?: WriteOrder): Promise<WriteResult>;

  /** Removes every entry. */
  flush(): Promise<void>;

  /**
   * Removes every entry carrying `tag`; answers how many were removed. O(matches).
   * @param order earlier writes this one requires (only for backends with `ordersWrites`;
   *   the frontend handles it for the others). A flush that ran counts as applied.
   */
  flushByTag(tag: string, order?: WriteOrder): Promise<number>;

  /** Identifiers of the live entries carrying `tag`. O(matches). */
  findIdentifiersByTag(tag: string): Promise<string[]>;

  /**
   * Optional: `findIdentifiersByTag` a page at a time, each call O(limit) (not O(matches)).
   * Start with `cursor` undefined and pass the answered cursor back until none is answered.
   * Guarantees: every entry that is live and carries `tag` during the whole iteration is
   * answered at least once; ids are unique within one call; expired entries are never answered.
   * Entries added or removed during the iteration may or may not be answered. A page may hold
   * somewhat more or fewer than `limit` ids (also none while the cursor goes on). Across pages
   * an id is answered again only when the backend's index was rebuilt meanwhile (Redis: a
   * shrinking sorted set rehashed under ZSCAN), so callers that must never repeat dedupe.
   */
  findIdentifiersByTagPage?(tag: string, cursor: string | undefined, limit: number): Promise<TagPage>;

  /**
   * Removes expired entries (oldest expiry first, at most `limit` of them when given) with
   * their tag memberships and answers them, so callers can clean up what they referenced.
   * O(expired).
   */
  collectGarbage(limit?: number): Promise<BackendEntry[]>;

  /**
   * Optional: the locker (a `SessionLocker` sharing this backend's store) whose locks a guarded
   * `write` with `WriteGuard.unlocked` checks in the same atomic step. Set only when the backend
   * can do that; callers compare it with their locker before relying on it.
   */
  readonly checksLocksOf?: object;

  /**
   * Optional: whether `write` honours `WriteGuard.maxEntries` (counts the guard's group in the
   * same atomic step), so callers need not read the group first to enforce a cap.
   */
  readonly capsGroupEntries?: boolean;

  /**
   * Optional: whether `write`, `remove` and `flushByTag` honour their `WriteOrder` argument
   * (run a write only after, and only if, the writes it requires applied; settle its ticket).
   * Worth it where a chain can go out as one atomic call (a standalone Redis, PostgreSQL with a
   * shared batcher) or runs synchronously (memory); without it,
   * `VariableFrontend` waits for each write's prerequisites before sending it.
   */
  readonly ordersWrites?: boolean;

  /**
   * Optional: whether `write` honours `WriteBatch.mustMatch` and `WriteGuard.copyFrom` (a
   * group's entries moved server-side, see there), in one atomic step with the rest of a chain
   * (`ordersWrites`). Backends without it ignore both fields: callers check this first.
   */
  readonly movesGroups?: boolean;
  /**
   * Optional: whether `write` honours `WriteGuard.copyUnlocked` (the source's lock and guard
   * checked inside the move's atomic step). Callers check this first; without it they check the
   * source with an `unlocked` write of its own.
   */
  readonly copiesUnlocked?: boolean;
  /**
   * Optional: the locker (a `SessionLocker`) whose lock commands share one ordered connection
   * with every command of this backend: a command this backend sends after the locker's
   * `acquire()` has returned its promise runs after that acquire's first command. With a lock
   * that was `immediate`, reads sent that way ran under the lock, in the same round trip.
   */
  readonly ordersAfterLocksOf?: object;
  /** Releases timers and connections the backend owns (not a client that was passed in). */
  close?(): Promise<void>;
}

/** One page of `findIdentifiersByTagPage`; `cursor` absent = the iteration is complete. */
export interface TagPage {
  readonly ids: string[];
  readonly cursor?: string;
}

/** An entry as answered by `getByTag` and `collectGarbage`. */
export interface BackendEntry {
  readonly id: string;
  readonly data: string;
}

/** One entry to store in a `write` batch. */
export interface BackendWrite {
  readonly id: string;
  readonly data: string;
  readonly tags?: readonly string[];
  /** Seconds; `0` or omitted = never expires. */
  readonly lifetime?: number;
}

export interface WriteBatch {
  readonly sets?: readonly BackendWrite[];
  readonly removes?: readonly string[];
  /**
   * Ids that must be live entries for the batch to apply (a conditional update of an entry
   * that someone else may remove or let expire meanwhile, e.g. a session's metadata). If one
   * is missing or expired, nothing of the batch is written and `write` answers `'missing'`.
   * Same slot-group rule as a guard: keep them in the group of the batch's ids. Atomic on the
   * memory and Redis backends; check-then-set on cache-manager (see there). @default []
   */
  readonly mustExist?: readonly string[];
  /**
   * Entries that must be live and hold exactly `data` (as stored) for the batch to apply; else
   * nothing is written and `write` answers `'changed'`. Optimistic concurrency: a caller that
   * read an entry writes only if nobody has rewritten it since. Only for backends with
   * `movesGroups` (others ignore it). @default []
   */
  readonly mustMatch?: readonly { readonly id: string; readonly data: string }[];
}

/**
 * Guards a write with a fencing number, so that a stale writer loses nothing: a writer whose
 * lock expired holds a smaller fence than the writer after it and cannot overwrite newer data;
 * a missing guard entry means the owner (a session) was destroyed, so nothing is written back.
 */
export interface WriteGuard {
  readonly id: string;
  readonly fence: number;
  /** Create the guard entry if it does not exist (only the creator of a session sets this). */
  readonly create?: boolean;
  /** Tags of the guard entry when it is created. */
  readonly tags?: readonly string[];
  /**
   * Seconds the guard entry lives from now (its owner's lifetime, e.g. a session's remaining
   * lifetime): once it has passed, the guard counts as missing and later writes answer
   * `'missing'`. Backends with store-native expiry also keep every entry of the guard's group
   * (the ids tagged with the group), the group's tag set and the guard itself natively at least
   * this long plus their safety margin, refreshed by each write that gives a lifetime; entries a
   * write without a lifetime stores are kept as long as the guard. Omitted: the guard keeps
   * its expiry (a created guard then never expires). @default undefined
   */
  readonly lifetime?: number;
  /**
   * The caller holds no lock: instead of checking `fence`, the write takes a fresh fence from
   * the lock of the guard's group in `checksLocksOf` (one that exceeds every fence that lock
   * handed out before, so an older holder whose lock expired is fenced off from now on), and
   * applies only while nobody holds that lock; otherwise it writes nothing and answers
   * `'locked'`. Only for backends whose `checksLocksOf` is the caller's locker. @default false
   */
  readonly unlocked?: boolean;
  /**
   * At most this many entries of the guard's group (members of the group's own tag set, the
   * guard and `uncountedPrefix` entries not counted) after the write; a write that would leave more writes nothing and
   * answers `'full'`. Only for backends with `capsGroupEntries`. @default undefined (no cap)
   */
  readonly maxEntries?: number;
  /**
   * With `maxEntries`: entries whose id continues the group with `.` + this prefix (e.g. `~`
   * for `<group>.~flashes`) are not counted. @default undefined (all are counted)
   */
  readonly uncountedPrefix?: string;
  /**
   * With `create`, for a group that does not exist yet: the group starts with the entries of
   * group `copyFrom` (as they are at that moment, in the same atomic step; its guard is not
   * copied), under this group's ids, with this write's sets and removes on top. An entry of
   * `copyFrom` that carries another tag than its group, or an expiry of its own, cannot be
   * copied: nothing is written and `write` answers `'changed'`. A storage move without the
   * source's lock: what is moved is what the source holds when the move runs, so no write to
   * it is lost. Only for backends with `movesGroups` (others ignore it). @default undefined
   */
  readonly copyFrom?: string;
  /**
   * With `copyFrom`: the move applies only while nobody holds (or, in memory, awaits) the lock
   * of group `copyFrom` in `checksLocksOf`, as an `unlocked` write checks its own group's, and
   * only while `copyFrom`'s guard (`<copyFrom>` + this guard's suffix) is live; otherwise
   * nothing is written and `write` answers `'locked'` or `'missing'`. Nothing is written to the
   * source, no fence onto its guard either (the caller flushes it once the move is published, so
   * a holder whose lock expired finds it gone). Saves the separate unlocked check of the source a move without
   * the lock needs otherwise. Only for backends with `copiesUnlocked`. @default false
   */
  readonly copyUnlocked?: boolean;
}

/**
 * `ok`: written. `skipped`: a write it required (`WriteOrder.after`) did not apply. `missing`: the guard entry, or an entry of `mustExist`, is gone or expired.
 * `fenced`: a newer fence has written. `locked`: an `unlocked` write found the lock held.
 * `full`: the write would leave more than `maxEntries` entries in the guard's group.
 * `changed`: an entry of `mustMatch` is gone or holds other data, or `copyFrom` holds an entry that cannot be copied.
 */
export type WriteResult = 'ok' | 'missing' | 'fenced' | 'locked' | 'full' | 'changed' | 'skipped';
