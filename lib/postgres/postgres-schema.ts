import { PostgresNames, quoteIdentifier, type PostgresSchemaOptions } from './postgres-names.js';

/**
 * The version of the schema below. `migrate()` records it in `<tablePrefix>schema_version`.
 * Every version's statements are idempotent and applied on top of the one before: version 2
 * adds the `batch` function (same-tick writes of the session stores in one statement), the entry
 * cap in `write` (two more arguments; the version-1 signature stays, as a wrapper) and makes
 * the lock ticket sequence UNLOGGED (PostgreSQL 15 and newer). Version 3 keeps every signature
 * and answer and makes commits cheaper: `write` runs fewer statements on the usual paths (and
 * counts a group O(group) whatever the tables held when a connection planned it), `batch` one
 * subtransaction instead of one per operation, and the entries and lock tables leave room in
 * their pages for HOT updates (fillfactor). Version 4 adds chains to `batch` (two more
 * arguments: operations that apply only if earlier ones of the call applied), so a login's
 * dependent writes are one statement; the version-3 signature stays, as a wrapper. Version 5
 * adds `mustMatch` and `copyFrom` to `write` and `batch` (the answer 'changed'), so logins and
 * metadata commits can go without the lock, and `batch` creates the lock rows of its unlocked
 * writes before it locks them; the version-4 signatures stay, as wrappers. Version 5's `write`
 * also runs fewer statements: an unlocked write's fence and its group's advisory lock are one
 * (the lock row created in it if missing), the guard and the sets one, and a fresh entry's tag
 * rows come with it (only entries that existed are retagged). Version 6 adds a lock name to
 * `flush_by_tag` (the version-5 signature stays, as a wrapper; `batch` reads it from
 * `p_lock_names` for its flushes): a flushed storage group is gone for good, so its lock row
 * goes with it (at once when free, else at its release: the `retired` column of the locks
 * table), instead of staying for the locker's fenceTtl (a row per login or logout). Version 7
 * keeps every signature: a copying `write` given a lock name (`WriteGuard.copyUnlocked`) checks
 * that the source group's lock is free and its guard live, drawing no fence (a login's check of
 * the old storage was an unlocked write of its own before), and an unlocked write that finds its
 * guard gone deletes the lock row its draw created (it stayed for fenceTtl before).
 */
export const POSTGRES_SCHEMA_VERSION = 7;

/*
 * Design of the schema (see README "PostgreSQL"):
 *
 * - `entries` holds every cache entry of every backend sharing the schema, told apart by
 *   `namespace` (the session stores use `<prefix>m` for metadata and `<prefix>s` for storage).
 *   `expires_at` NULL = never. `fence` is set on write guards only (their `value` is the fence
 *   as text too, which is what `get()` answers). Ids and tags are `COLLATE "C"`: byte order,
 *   so keyset paging and lock ordering do not depend on the database's locale.
 * - `tags` holds one row per (tag, entry): find-by-tag and flush-by-tag read one range of its
 *   primary key, O(matches). The foreign key removes an entry's memberships with it.
 * - The partial index on (namespace, expires_at, id) makes garbage collection O(expired): it
 *   reads the due range in expiry order and deletes in batches with FOR UPDATE SKIP LOCKED, so
 *   several app instances collecting at once never wait for or collide with each other.
 * - `write` is the one function a commit calls: guard check (existence, fence), `mustExist`
 *   check, sets, removes and the guard update in one statement, hence one transaction. A
 *   guarded write first takes a transaction-level advisory lock on its group, which
 *   `flush_by_tag` of the same tag takes too, so commits and a destroy of one session are
 *   serialised instead of interleaved; row locks (`mustExist`, the upserted ids) are taken in
 *   byte order, and `flush_by_tag` locks its rows in that order too, so the writes the session
 *   layer makes (guarded per group, or one metadata id) cannot deadlock.
 * - The lock tables are UNLOGGED: a crash empties them (every lock is then free, and fences
 *   carry on from the database clock in microseconds), and lock traffic writes no WAL, so its
 *   commits never wait for a WAL flush (PostgreSQL flushes at commit only when the transaction
 *   wrote WAL). So is the ticket sequence from PostgreSQL 15 on (UNLOGGED sequences); before, a
 *   queueing acquire logs it once per 32 tickets.
 * - `batch` runs several operations (write, remove, flush_by_tag, on any namespaces) in one
 *   statement, one transaction, one WAL flush: what the session stores send in one tick. Each
 *   operation answers as if it had been sent alone: refusals are answers, not exceptions, and
 *   when one raises, all run again each in a block of its own that catches its exception (its
 *   work is rolled back, the others' is not), so no operation can undo another.
 * - Lock order, what keeps concurrent statements from deadlocking: namespaces in byte order;
 *   within one, the lock rows an unlocked write draws its fence from, then the advisory locks
 *   of guard groups and flushed tags, then entry rows in byte order (a group's rows are only
 *   locked, by the session layer's writes, under the group's advisory lock). One operation takes
 *   its locks in that order; a `batch` of at most one operation per namespace, in namespace
 *   order, does too. A `batch` whose operations are in any other order (a chain of version 4:
 *   dependency order, e.g. storage, metadata, storage again) first takes every lock its
 *   operations will wait for, in that order, outside the blocks that may roll back: each
 *   operation then only takes locks it already holds, rows of a group whose advisory lock it
 *   holds, or rows nobody else can hold yet (its fresh ids, their tag rows). A lock row that
 *   does not exist yet (a session whose lock was never taken) is created up front too, before
 *   it is locked (version 5): otherwise the unlocked write inside the chain would insert it
 *   after taking its group's advisory lock, while a lone unlocked write of the same session
 *   that inserted it first waits for that advisory lock: each waits for the other (what the
 *   model test found when a tag commit went without the lock beside a data commit of a fresh
 *   session).
 * - A write with `copyFrom` (version 5) reads the source group's rows: it takes the source's
 *   advisory lock with its own, in lock-key order (batch's up-front locks count the source
 *   among the groups), so it fits the order above; it locks no source row (the source's
 *   guarded writes and destroys wait for its advisory lock), and its copies are fresh rows of
 *   its own group. `mustMatch` rows are locked with the `mustExist` rows, in byte order.
 */

/**
 * Every plpgsql function of the schema plans its statements once per connection: left to the
 * plan cache, statements over array arguments (`unnest(p_ids, ...)`, `= ANY (p_removes)`) look
 * cheaper with the array's actual length than with a generic estimate, so they were planned
 * again on every call, which cost several times the execution itself (server CPU per commit
 * measured: about 900 µs replanning vs 200 µs generic). Every plan here is a primary-key or
 * index range read, whatever the arrays hold.
 */
const GENERIC_PLANS = 'SET plan_cache_mode = force_generic_plan';

/** The parameters of `write` in version 1; version 2 adds the entry cap after them (the version-1 wrapper keeps the old signature). */
const WRITE_PARAMETERS = `p_namespace text, p_now timestamptz,
  p_guard_id text, p_guard_fence double precision, p_guard_value text, p_guard_create boolean,
  p_guard_tags text[], p_guard_lifetime boolean, p_guard_expires timestamptz,
  p_must_exist text[],
  p_ids text[], p_values text[], p_expires timestamptz[],
  p_tag_ids text[], p_tag_tags text[],
  p_removes text[],
  p_lock_name text`;

/** The parameters of `batch` that describe its operations (versions 2 to 5; version 4 adds the chains after them, version 5 mustMatch and copyFrom). */
const BATCH_OPERATION_PARAMETERS = `p_kinds text[], p_namespaces text[], p_nows timestamptz[], p_keys text[],
  p_guard_fences double precision[], p_guard_values text[], p_guard_creates boolean[],
  p_guard_lifetimes boolean[], p_guard_expires timestamptz[], p_lock_names text[],
  p_max_entries integer[], p_uncounted_prefixes text[],
  p_guard_tag_ends integer[], p_guard_tags text[],
  p_must_exist_ends integer[], p_must_exist text[],
  p_set_ends integer[], p_ids text[], p_values text[], p_expires timestamptz[],
  p_tag_ends integer[], p_tag_ids text[], p_tag_tags text[],
  p_remove_ends integer[], p_removes text[]`;

/** The DDL of every version, for the given names; idempotent (IF NOT EXISTS, CREATE OR REPLACE). */
function schemaStatements(names: PostgresNames): string {
  const entries = names.entries();
  const tags = names.tags();
  const locks = names.locks();
  const waiters = names.waiters();
  const tombstones = names.tombstones();
  const tickets = names.tickets();
  const index = (name: string) => quoteIdentifier(names.tablePrefix + name);
  const lockClass = names.lockClassLiteral;
  const live = (alias: string, now: string) => `(${alias}.expires_at IS NULL OR ${alias}.expires_at > ${now})`;
  // The guard's group's live entries once the sets and removes are applied (members of the
  // group's own tag, the guard and ids continuing the group with '.' || p_uncounted_prefix not
  // counted), counted before anything is written: a refused write leaves nothing behind.
  // O(group): one range of the tags' primary key, each member's liveness a primary-key look-up
  // (a correlated subquery, so that no plan made while the tables were small scans the namespace).
  // The sets' tag rows brought in line with p_tag_ids/p_tag_tags (and `extra` rows), indented by `indent`.
  const retag = (indent: string, extra: string) =>
    `WITH stale AS (
  DELETE FROM ${tags} t
    WHERE t.namespace = p_namespace AND t.id = ANY (p_ids)
      AND NOT EXISTS (SELECT 1 FROM unnest(p_tag_ids, p_tag_tags) AS n(id, tag) WHERE n.id = t.id AND n.tag = t.tag)
)
INSERT INTO ${tags} (namespace, tag, id)
  SELECT p_namespace, n.tag, n.id FROM unnest(p_tag_ids, p_tag_tags) AS n(id, tag)${extra === '' ? '' : `\n  ${extra}`}
  ON CONFLICT DO NOTHING;`
      .split('\n')
      .map((line) => indent + line)
      .join('\n');
  const groupCount = `(SELECT count(*) FROM (
      SELECT t.id FROM ${tags} t
        WHERE t.namespace = p_namespace AND t.tag = v_group
          AND (SELECT ${live('c', 'p_now')} FROM ${entries} c WHERE c.namespace = p_namespace AND c.id = t.id)
      UNION
      SELECT n.id FROM unnest(p_tag_ids, p_tag_tags) AS n(id, tag) WHERE n.tag = v_group
    ) m
    WHERE m.id <> p_guard_id AND NOT (m.id = ANY (p_removes))
      AND (v_skip IS NULL OR left(m.id, length(v_skip)) <> v_skip))`;
  // Whether operation i of `batch` may run (version 4): every operation it requires applied.
  const ready = (indent: string) =>
    `v_ready := true;
FOR j IN coalesce(p_after_ends[i - 1], 0) + 1 .. coalesce(p_after_ends[i], 0) LOOP
  IF NOT coalesce(p_after[j] < i AND v_applied[p_after[j]], false) THEN v_ready := false; END IF;
END LOOP;`
      .split('\n')
      .map((line) => indent + line)
      .join('\n');
  // Operation i's answer, and whether it applied (a flush that ran did).
  const record = (indent: string) =>
    `v_results := v_results || v_result;
v_applied := v_applied || CASE p_kinds[i]
  WHEN 'write' THEN v_result = 'ok'
  WHEN 'remove' THEN v_result = 'true'
  WHEN 'flush' THEN v_result <> 'skipped' AND v_result NOT LIKE 'error %'
  ELSE false END;`
      .split('\n')
      .map((line) => indent + line)
      .join('\n');
  // One operation of `batch`, into v_result; indented by `indent`.
  const dispatch = (indent: string) =>
    `IF p_kinds[i] = 'write' THEN
  v_result := ${names.fn('write')}(
    p_namespaces[i], p_nows[i], p_keys[i], p_guard_fences[i], p_guard_values[i], p_guard_creates[i],
    p_guard_tags[coalesce(p_guard_tag_ends[i - 1], 0) + 1 : p_guard_tag_ends[i]],
    p_guard_lifetimes[i], p_guard_expires[i],
    p_must_exist[coalesce(p_must_exist_ends[i - 1], 0) + 1 : p_must_exist_ends[i]],
    p_ids[coalesce(p_set_ends[i - 1], 0) + 1 : p_set_ends[i]],
    p_values[coalesce(p_set_ends[i - 1], 0) + 1 : p_set_ends[i]],
    p_expires[coalesce(p_set_ends[i - 1], 0) + 1 : p_set_ends[i]],
    p_tag_ids[coalesce(p_tag_ends[i - 1], 0) + 1 : p_tag_ends[i]],
    p_tag_tags[coalesce(p_tag_ends[i - 1], 0) + 1 : p_tag_ends[i]],
    p_removes[coalesce(p_remove_ends[i - 1], 0) + 1 : p_remove_ends[i]],
    p_lock_names[i], p_max_entries[i], p_uncounted_prefixes[i],
    coalesce(p_must_match_ids[coalesce(p_must_match_ends[i - 1], 0) + 1 : p_must_match_ends[i]], '{}'),
    coalesce(p_must_match_values[coalesce(p_must_match_ends[i - 1], 0) + 1 : p_must_match_ends[i]], '{}'),
    p_copy_froms[i]);
ELSIF p_kinds[i] = 'remove' THEN
  v_live := NULL;
  DELETE FROM ${entries} e WHERE e.namespace = p_namespaces[i] AND e.id = p_keys[i]
    RETURNING ${live('e', 'p_nows[i]')} INTO v_live;
  v_result := CASE WHEN v_live THEN 'true' ELSE 'false' END;
ELSIF p_kinds[i] = 'flush' THEN
  v_result := ${names.fn('flush_by_tag')}(p_namespaces[i], p_keys[i], p_nows[i], p_lock_names[i])::text;
ELSE
  v_result := 'error 22023 unknown operation ' || coalesce(p_kinds[i], 'NULL');
END IF;`
      .split('\n')
      .map((line) => indent + line)
      .join('\n');
  return `
CREATE SCHEMA IF NOT EXISTS ${names.quotedSchema};

CREATE TABLE IF NOT EXISTS ${names.versions()} (
  version integer PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS ${entries} (
  namespace text COLLATE "C" NOT NULL,
  id text COLLATE "C" NOT NULL,
  value text NOT NULL,
  expires_at timestamptz,
  fence double precision,
  PRIMARY KEY (namespace, id)
);
CREATE INDEX IF NOT EXISTS ${index('entries_expiry')} ON ${entries} (namespace, expires_at, id) WHERE expires_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS ${tags} (
  namespace text COLLATE "C" NOT NULL,
  tag text COLLATE "C" NOT NULL,
  id text COLLATE "C" NOT NULL,
  PRIMARY KEY (namespace, tag, id),
  FOREIGN KEY (namespace, id) REFERENCES ${entries} (namespace, id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS ${index('tags_entry')} ON ${tags} (namespace, id);

CREATE UNLOGGED TABLE IF NOT EXISTS ${locks} (
  name text COLLATE "C" PRIMARY KEY,
  token text,
  expires_at timestamptz NOT NULL,
  fence bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS ${index('locks_expiry')} ON ${locks} (expires_at);
-- Version 6: the lock of a storage group flushed while the lock was held (deleted at release).
ALTER TABLE ${locks} ADD COLUMN IF NOT EXISTS retired boolean NOT NULL DEFAULT false;

CREATE SEQUENCE IF NOT EXISTS ${tickets};

CREATE UNLOGGED TABLE IF NOT EXISTS ${waiters} (
  name text COLLATE "C" NOT NULL,
  token text COLLATE "C" NOT NULL,
  ticket bigint NOT NULL,
  lease_until timestamptz NOT NULL,
  PRIMARY KEY (name, token)
);
CREATE INDEX IF NOT EXISTS ${index('lock_waiters_queue')} ON ${waiters} (name, ticket);

CREATE UNLOGGED TABLE IF NOT EXISTS ${tombstones} (
  token text COLLATE "C" PRIMARY KEY,
  expires_at timestamptz NOT NULL
);

-- One commit: answers 'ok', 'missing' (guard or a mustExist entry gone or expired), 'fenced'
-- (a newer fence has written), 'locked' (an unlocked write found the lock held) or 'full'
-- (p_max_entries: the guard's group would hold more entries than that; version 2).
-- Version 3 answers the same with fewer statements on the usual paths (see the comments below).
-- Version 5 adds 'changed': p_must_match_ids/p_must_match_values (WriteBatch.mustMatch: each
-- entry live and holding exactly that value) and p_copy_from (WriteGuard.copyFrom: a created
-- group starts with the live entries of group p_copy_from, under its own ids); the signature of
-- versions 2 to 4 stays, as a wrapper.
CREATE OR REPLACE FUNCTION ${names.fn('write')}(
${WRITE_PARAMETERS},
  p_max_entries integer, p_uncounted_prefix text,
  p_must_match_ids text[], p_must_match_values text[], p_copy_from text
) RETURNS text LANGUAGE plpgsql ${GENERIC_PLANS} AS $fn$
DECLARE
  v_key integer;
  v_suffix text;
  v_copy_ids text[];
  v_copy_values text[];
  v_fence double precision;
  v_found boolean := false;
  v_live boolean := false;
  v_created boolean := false;
  v_done boolean := false;
  v_sets_done boolean := false;
  v_updated integer := 0;
  v_guard_written boolean;
  v_guard_pending boolean := false;
  v_count integer;
  v_group text;
  v_skip text;
  v_drawn bigint;
  v_advised boolean;
BEGIN
  -- An unlocked write (the caller holds no lock): it applies only while nobody holds the lock
  -- named p_lock_name, and draws the fence as lock_acquire would, so the lock's next holder
  -- gets a greater one and a holder whose lock expired before is fenced off. One statement
  -- (version 5; before, an UPDATE, and four more statements when it found nothing): the row is
  -- created free if missing, else locked (waiting for a concurrent holder of the row) and its
  -- free condition re-checked on the row it then finds; no row answered: the lock is held.
  -- The same statement takes the guard's group advisory lock (below) once the fence is drawn
  -- (the lock order: the lock row, then the advisory lock; a copying write is never unlocked).
  IF p_lock_name IS NOT NULL AND p_copy_from IS NULL THEN
    WITH drawn AS (
      INSERT INTO ${locks} AS l (name, token, expires_at, fence)
        VALUES (p_lock_name, NULL, clock_timestamp(), floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
        ON CONFLICT (name) DO UPDATE SET fence = greatest(l.fence + 1, floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
          WHERE l.token IS NULL OR l.expires_at <= clock_timestamp()
        RETURNING l.fence
    )
    SELECT d.fence, a.taken INTO v_drawn, v_advised FROM drawn d
      LEFT JOIN LATERAL (
        SELECT true AS taken, pg_advisory_xact_lock(hashtext(${lockClass}), hashtext(p_namespace || ' ' || split_part(p_guard_id, '.', 1)))
          WHERE p_guard_id IS NOT NULL AND p_copy_from IS NULL AND d.fence IS NOT NULL
      ) a ON true;
    IF NOT FOUND THEN RETURN 'locked'; END IF;
    p_guard_fence := v_drawn;
    p_guard_value := v_drawn::text;
  END IF;
  IF p_guard_id IS NOT NULL AND p_copy_from IS NULL THEN
    -- Serialises the guarded writes and destroys (flush_by_tag) of one group (an unlocked write
    -- took it with its fence, above).
    IF v_advised IS NULL THEN
      PERFORM pg_advisory_xact_lock(hashtext(${lockClass}), hashtext(p_namespace || ' ' || split_part(p_guard_id, '.', 1)));
    END IF;
  ELSIF p_guard_id IS NOT NULL THEN
    -- A copy with a lock name (version 7; WriteGuard.copyUnlocked): the lock of the source
    -- group p_copy_from must be free. Checked on its row, locked first as the lock order wants
    -- (a concurrent acquire waits for this transaction, whose chain flushes the source), and
    -- left as it is: no fence is drawn for a group that is not written but flushed, and a
    -- missing row is not created (it would stay behind the flush).
    IF p_lock_name IS NOT NULL THEN
      PERFORM 1 FROM ${locks} l WHERE l.name = p_lock_name AND l.token IS NOT NULL AND l.expires_at > clock_timestamp() FOR UPDATE;
      IF FOUND THEN RETURN 'locked'; END IF;
    END IF;
    -- A copy reads the source group's rows, so it holds the source's advisory lock too (no
    -- guarded write or destroy of the source runs meanwhile: the copy is what the source holds
    -- at this moment). Both are taken here, after the lock rows (a copying write is never
    -- unlocked) and before any entry row, in the order of the lock keys, which is the order
    -- every other taker of several advisory locks uses (batch's up-front locks, which include
    -- the source group): so no cycle. The source's rows are only read, not locked; the copies
    -- are rows of the new group, under its advisory lock.
    v_group := split_part(p_guard_id, '.', 1);
    FOR v_key IN SELECT DISTINCT k.k FROM unnest(ARRAY[hashtext(p_namespace || ' ' || v_group),
        hashtext(p_namespace || ' ' || p_copy_from)]) AS k(k) ORDER BY 1 LOOP
      PERFORM pg_advisory_xact_lock(hashtext(${lockClass}), v_key);
    END LOOP;
    v_suffix := substr(p_guard_id, length(v_group) + 1);
    -- copyUnlocked: the source's guard must be live (the session was not destroyed meanwhile).
    IF p_lock_name IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ${entries} e
        WHERE e.namespace = p_namespace AND e.id = p_copy_from || v_suffix AND ${live('e', 'p_now')}) THEN
      RETURN 'missing';
    END IF;
    -- What cannot be copied as such (an id outside the group, or, unless it is the guard or the
    -- write sets or removes it, an expiry or a tag of its own) refuses the whole write.
    IF EXISTS (SELECT 1 FROM ${tags} t JOIN ${entries} e ON e.namespace = t.namespace AND e.id = t.id
        WHERE t.namespace = p_namespace AND t.tag = p_copy_from AND ${live('e', 'p_now')}
          AND (left(e.id, length(p_copy_from) + 1) <> p_copy_from || '.'
            OR (substr(e.id, length(p_copy_from) + 1) <> v_suffix
              AND NOT (v_group || substr(e.id, length(p_copy_from) + 1)) = ANY (p_ids || p_removes)
              AND (e.expires_at IS NOT NULL
                OR EXISTS (SELECT 1 FROM ${tags} o WHERE o.namespace = p_namespace AND o.id = e.id AND o.tag <> p_copy_from))))) THEN
      RETURN 'changed';
    END IF;
    SELECT coalesce(array_agg(c.id ORDER BY c.id), '{}'), coalesce(array_agg(c.value ORDER BY c.id), '{}')
      INTO v_copy_ids, v_copy_values
      FROM (SELECT v_group || substr(e.id, length(p_copy_from) + 1) AS id, e.value
              FROM ${tags} t JOIN ${entries} e ON e.namespace = t.namespace AND e.id = t.id
              WHERE t.namespace = p_namespace AND t.tag = p_copy_from AND ${live('e', 'p_now')}
                AND substr(e.id, length(p_copy_from) + 1) <> v_suffix) c
      WHERE NOT c.id = ANY (p_ids || p_removes);
    -- The copies join the sets (no expiry, the group's tag): counted, created and tagged with them.
    IF cardinality(v_copy_ids) > 0 THEN
      p_ids := p_ids || v_copy_ids;
      p_values := p_values || v_copy_values;
      p_expires := p_expires || array_fill(NULL::timestamptz, ARRAY[cardinality(v_copy_ids)]);
      p_tag_ids := p_tag_ids || v_copy_ids;
      p_tag_tags := p_tag_tags || array_fill(v_group, ARRAY[cardinality(v_copy_ids)]);
    END IF;
  END IF;
  IF cardinality(p_must_match_ids) > 0 THEN
    -- Locked with the mustExist rows in one statement, in byte order (see above), so that the
    -- entries checked stay as checked until this transaction ends.
    PERFORM 1 FROM ${entries} e
      WHERE e.namespace = p_namespace AND e.id = ANY (p_must_match_ids || p_must_exist)
      ORDER BY e.id FOR UPDATE;
    IF EXISTS (SELECT 1 FROM unnest(p_must_match_ids, p_must_match_values) AS m(id, value)
        WHERE NOT EXISTS (SELECT 1 FROM ${entries} e
          WHERE e.namespace = p_namespace AND e.id = m.id AND ${live('e', 'p_now')} AND e.value = m.value)) THEN
      RETURN 'changed';
    END IF;
  END IF;
  IF cardinality(p_must_exist) > 0 THEN
    PERFORM 1 FROM ${entries} e
      WHERE e.namespace = p_namespace AND e.id = ANY (p_must_exist) AND ${live('e', 'p_now')}
      ORDER BY e.id FOR UPDATE;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count < cardinality(p_must_exist) THEN RETURN 'missing'; END IF;
  END IF;
  IF p_max_entries IS NOT NULL AND p_guard_id IS NOT NULL THEN
    v_group := split_part(p_guard_id, '.', 1);
    v_skip := CASE WHEN p_uncounted_prefix IS NULL THEN NULL ELSE v_group || '.' || p_uncounted_prefix END;
    SELECT ${groupCount} INTO v_count;
    IF v_count > p_max_entries THEN RETURN 'full'; END IF;
  END IF;
  -- The usual commit of an existing session checks its guard and updates it in one statement,
  -- here, nothing being refused after this. Not for a guard the sets write or the removes
  -- remove (updated after them, below: a batch that removed it, a destroy, leaves it removed),
  -- nor for a creating commit (its guard is usually missing); nor when the update finds nothing
  -- to do: those read the guard first and go on as version 2 did.
  v_guard_written := p_guard_id = ANY (p_ids) OR p_guard_id = ANY (p_removes);
  IF p_guard_id IS NOT NULL AND NOT v_guard_written AND NOT p_guard_create THEN
    -- Skipped when it would change nothing (the same fence, no new lifetime): no dead row per
    -- commit. The sets go in the same statement, only if the guard was written (version 5;
    -- their tag rows follow in a statement of its own, which sees what others committed before
    -- these rows were locked).
    WITH guard AS (
      UPDATE ${entries} e
        SET value = p_guard_value, fence = p_guard_fence,
            expires_at = CASE WHEN p_guard_lifetime THEN p_guard_expires ELSE e.expires_at END
        WHERE e.namespace = p_namespace AND e.id = p_guard_id AND ${live('e', 'p_now')}
          AND (e.fence IS NULL OR e.fence <= p_guard_fence)
          AND (p_guard_lifetime OR e.fence IS DISTINCT FROM p_guard_fence)
        RETURNING 1
    ), up AS (
      INSERT INTO ${entries} AS e (namespace, id, value, expires_at, fence)
        SELECT p_namespace, s.id, s.value, s.expires_at, NULL
          FROM unnest(p_ids, p_values, p_expires) AS s(id, value, expires_at)
          WHERE EXISTS (SELECT 1 FROM guard) ORDER BY s.id
        ON CONFLICT (namespace, id) DO UPDATE
          SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, fence = NULL
        RETURNING e.id, e.xmax = 0 AS inserted
    ), born AS (
      INSERT INTO ${tags} (namespace, tag, id)
        SELECT DISTINCT p_namespace, n.tag, n.id
          FROM unnest(p_tag_ids, p_tag_tags) AS n(id, tag) JOIN up ON up.id = n.id AND up.inserted
        ON CONFLICT DO NOTHING
    )
    SELECT EXISTS (SELECT 1 FROM guard), (SELECT count(*) FROM up WHERE NOT up.inserted) INTO v_done, v_updated;
    v_sets_done := v_done;
  END IF;
  IF p_guard_id IS NOT NULL AND NOT v_done THEN
    SELECT true, e.fence, ${live('e', 'p_now')} INTO v_found, v_fence, v_live
      FROM ${entries} e WHERE e.namespace = p_namespace AND e.id = p_guard_id;
    IF NOT FOUND THEN
      v_found := false;
      v_live := false;
    END IF;
    IF NOT v_live THEN
      IF NOT p_guard_create THEN
        -- An unlocked write to a storage that is gone (destroyed or expired while the request was
        -- in flight) leaves no lock row: the draw above created or updated it, nothing will use
        -- it again (version 7; before, it stayed for the locker's fenceTtl). The row is locked
        -- by this transaction and free (the draw needs that).
        IF p_lock_name IS NOT NULL THEN DELETE FROM ${locks} l WHERE l.name = p_lock_name; END IF;
        RETURN 'missing';
      END IF;
      -- An expired guard counts as missing and is replaced, memberships included.
      IF v_found THEN
        DELETE FROM ${entries} e WHERE e.namespace = p_namespace AND e.id = p_guard_id;
      END IF;
      v_created := true;
      IF v_guard_written THEN
        -- The guard and its memberships in one statement (the foreign key is checked at its end).
        WITH guard AS (
          INSERT INTO ${entries} AS e (namespace, id, value, expires_at, fence)
            VALUES (p_namespace, p_guard_id, p_guard_value, p_guard_expires, p_guard_fence)
            ON CONFLICT (namespace, id) DO UPDATE
              SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, fence = EXCLUDED.fence
        )
        INSERT INTO ${tags} (namespace, tag, id)
          SELECT p_namespace, t.tag, p_guard_id FROM unnest(p_guard_tags) AS t(tag)
          ON CONFLICT DO NOTHING;
      ELSE
        -- Written with the sets below, in the same statement.
        v_guard_pending := true;
      END IF;
    ELSIF v_fence IS NOT NULL AND v_fence > p_guard_fence THEN
      RETURN 'fenced';
    END IF;
  END IF;
  IF cardinality(p_ids) > 0 AND NOT v_guard_pending THEN
    -- Row locks in byte order (see above); the entries before their tag rows, as flush_by_tag.
    -- The tag rows of entries the statement inserted come with it (an entry that did not exist
    -- has none: its memberships went with it); only entries that existed are retagged, in a
    -- statement of its own, which sees what others committed before their rows were locked
    -- (version 5; before, every set was retagged so).
    IF NOT v_sets_done THEN
      WITH up AS (
        INSERT INTO ${entries} AS e (namespace, id, value, expires_at, fence)
          SELECT p_namespace, s.id, s.value, s.expires_at, NULL
            FROM unnest(p_ids, p_values, p_expires) AS s(id, value, expires_at) ORDER BY s.id
          ON CONFLICT (namespace, id) DO UPDATE
            SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, fence = NULL
          RETURNING e.id, e.xmax = 0 AS inserted
      ), born AS (
        INSERT INTO ${tags} (namespace, tag, id)
          SELECT DISTINCT p_namespace, n.tag, n.id
            FROM unnest(p_tag_ids, p_tag_tags) AS n(id, tag) JOIN up ON up.id = n.id AND up.inserted
          ON CONFLICT DO NOTHING
      )
      SELECT count(*) FILTER (WHERE NOT up.inserted) INTO v_updated FROM up;
    END IF;
    IF v_updated > 0 THEN
      -- Memberships the sets no longer carry go, new ones come, in one statement (disjoint rows).
${retag('      ', '')}
    END IF;
  ELSIF v_guard_pending THEN
    WITH s AS (
      SELECT s.id, s.value, s.expires_at, NULL::double precision AS fence
        FROM unnest(p_ids, p_values, p_expires) AS s(id, value, expires_at)
      UNION ALL
      SELECT p_guard_id, p_guard_value, p_guard_expires, p_guard_fence WHERE v_guard_pending
    ), up AS (
      INSERT INTO ${entries} AS e (namespace, id, value, expires_at, fence)
        SELECT p_namespace, s.id, s.value, s.expires_at, s.fence FROM s ORDER BY s.id
        ON CONFLICT (namespace, id) DO UPDATE
          SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, fence = EXCLUDED.fence
        -- xmax is 0 on a row the statement inserted, the updating transaction's on one it updated.
        RETURNING e.id, e.xmax = 0 AS inserted
    ), born AS (
      INSERT INTO ${tags} (namespace, tag, id)
        SELECT DISTINCT p_namespace, n.tag, n.id
          FROM (SELECT n.id, n.tag FROM unnest(p_tag_ids, p_tag_tags) AS n(id, tag)
                UNION ALL
                SELECT p_guard_id, g.tag FROM unnest(p_guard_tags) AS g(tag) WHERE v_guard_pending) n
          JOIN up ON up.id = n.id AND up.inserted
    )
    SELECT count(*) FILTER (WHERE NOT up.inserted) INTO v_count FROM up;
    IF v_count > 0 THEN
      -- Entries that existed: the memberships they no longer carry go, new ones come, in one
      -- statement (disjoint rows), after their rows were locked above, as flush_by_tag does.
${retag(
  '      ',
  `UNION ALL
  SELECT p_namespace, g.tag, p_guard_id FROM unnest(p_guard_tags) AS g(tag) WHERE v_guard_pending`,
)}
    END IF;
  END IF;
  IF cardinality(p_removes) > 0 THEN
    DELETE FROM ${entries} e WHERE e.namespace = p_namespace AND e.id = ANY (p_removes);
  END IF;
  -- The guard keeps its tags (and its expiry unless a lifetime was given); a batch that
  -- removed it (a destroy) leaves it removed. Skipped when it would change nothing (the same
  -- fence, no new lifetime): no dead row per commit; and when done above.
  IF p_guard_id IS NOT NULL AND NOT v_done AND (NOT v_created OR p_guard_id = ANY (p_ids))
    AND (p_guard_lifetime OR v_fence IS DISTINCT FROM p_guard_fence OR v_created OR p_guard_id = ANY (p_ids)) THEN
    UPDATE ${entries} e
      SET value = p_guard_value, fence = p_guard_fence,
          expires_at = CASE WHEN p_guard_lifetime THEN p_guard_expires ELSE e.expires_at END
      WHERE e.namespace = p_namespace AND e.id = p_guard_id;
  END IF;
  RETURN 'ok';
END
$fn$;

-- The signature of versions 2 to 4 (no mustMatch, no copyFrom), for app instances of the
-- releases before during an upgrade; also what the version-1 signature below calls.
CREATE OR REPLACE FUNCTION ${names.fn('write')}(
  p_namespace text, p_now timestamptz,
  p_guard_id text, p_guard_fence double precision, p_guard_value text, p_guard_create boolean,
  p_guard_tags text[], p_guard_lifetime boolean, p_guard_expires timestamptz,
  p_must_exist text[],
  p_ids text[], p_values text[], p_expires timestamptz[],
  p_tag_ids text[], p_tag_tags text[],
  p_removes text[],
  p_lock_name text,
  p_max_entries integer, p_uncounted_prefix text
) RETURNS text LANGUAGE sql AS $fn$
  SELECT ${names.fn('write')}(p_namespace, p_now, p_guard_id, p_guard_fence, p_guard_value, p_guard_create,
    p_guard_tags, p_guard_lifetime, p_guard_expires, p_must_exist, p_ids, p_values, p_expires,
    p_tag_ids, p_tag_tags, p_removes, p_lock_name, p_max_entries, p_uncounted_prefix,
    '{}'::text[], '{}'::text[], NULL::text)
$fn$;

-- The version-1 signature (no entry cap), for app instances of the release before during an upgrade.
CREATE OR REPLACE FUNCTION ${names.fn('write')}(
${WRITE_PARAMETERS}
) RETURNS text LANGUAGE sql AS $fn$
  SELECT ${names.fn('write')}(p_namespace, p_now, p_guard_id, p_guard_fence, p_guard_value, p_guard_create,
    p_guard_tags, p_guard_lifetime, p_guard_expires, p_must_exist, p_ids, p_values, p_expires,
    p_tag_ids, p_tag_tags, p_removes, p_lock_name, NULL::integer, NULL::text)
$fn$;

-- Removes every entry carrying the tag (expired ones too); answers how many were live.
CREATE OR REPLACE FUNCTION ${names.fn('flush_by_tag')}(p_namespace text, p_tag text, p_now timestamptz)
RETURNS integer LANGUAGE plpgsql ${GENERIC_PLANS} AS $fn$
DECLARE
  v_live integer;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext(${lockClass}), hashtext(p_namespace || ' ' || p_tag));
  WITH doomed AS (
    SELECT e.id, ${live('e', 'p_now')} AS live
      FROM ${tags} t JOIN ${entries} e ON e.namespace = t.namespace AND e.id = t.id
      WHERE t.namespace = p_namespace AND t.tag = p_tag
      ORDER BY e.id FOR UPDATE OF e
  ), gone AS (
    DELETE FROM ${entries} e USING doomed d WHERE e.namespace = p_namespace AND e.id = d.id RETURNING d.live
  )
  SELECT count(*) FILTER (WHERE gone.live) INTO v_live FROM gone;
  RETURN v_live;
END
$fn$;

-- Version 6: flush_by_tag of a storage group also deletes the group's lock row (p_lock_name,
-- NULL = none): the group is gone for good, and a lock taken on it later draws its fence from
-- the clock, as a new lock does. A held row is marked retired instead, and its release deletes it.
CREATE OR REPLACE FUNCTION ${names.fn('flush_by_tag')}(p_namespace text, p_tag text, p_now timestamptz, p_lock_name text)
RETURNS integer LANGUAGE plpgsql ${GENERIC_PLANS} AS $fn$
DECLARE
  v_live integer;
BEGIN
  v_live := ${names.fn('flush_by_tag')}(p_namespace, p_tag, p_now);
  IF p_lock_name IS NOT NULL THEN
    DELETE FROM ${locks} l WHERE l.name = p_lock_name AND (l.token IS NULL OR l.expires_at <= clock_timestamp());
    -- Held (a destroy, a login under the lock): its release deletes it.
    IF NOT FOUND THEN UPDATE ${locks} l SET retired = true WHERE l.name = p_lock_name; END IF;
  END IF;
  RETURN v_live;
END
$fn$;

-- Wakes the first live waiter of a lock (its token is the NOTIFY payload), after dropping the
-- tickets of waiters that stopped refreshing them.
CREATE OR REPLACE FUNCTION ${names.fn('lock_wake')}(p_name text, p_now timestamptz, p_channel text)
RETURNS void LANGUAGE plpgsql ${GENERIC_PLANS} AS $fn$
DECLARE
  v_head text;
BEGIN
  DELETE FROM ${waiters} w WHERE w.name = p_name AND w.lease_until <= p_now;
  SELECT w.token INTO v_head FROM ${waiters} w WHERE w.name = p_name ORDER BY w.ticket LIMIT 1;
  IF v_head IS NOT NULL THEN PERFORM pg_notify(p_channel, v_head); END IF;
END
$fn$;

-- One look at a lock: out_fence when taken, else out_retry, the ms worth sleeping without a
-- wake-up. The fence is max(last fence of the key + 1, database clock in microseconds).
CREATE OR REPLACE FUNCTION ${names.fn('lock_acquire')}(
  p_name text, p_token text, p_ttl_ms integer, p_queue boolean, p_waiter_ttl_ms integer, p_channel text,
  OUT out_fence bigint, OUT out_retry integer
) LANGUAGE plpgsql ${GENERIC_PLANS} AS $fn$
DECLARE
  v_now timestamptz;
  v_token text;
  v_expires timestamptz;
  v_last bigint;
  v_dead integer;
  v_head text;
  v_head_lease timestamptz;
BEGIN
  out_retry := 0;
  INSERT INTO ${locks} AS l (name, token, expires_at, fence) VALUES (p_name, NULL, '-infinity', 0)
    ON CONFLICT (name) DO NOTHING;
  SELECT l.token, l.expires_at, l.fence INTO v_token, v_expires, v_last FROM ${locks} l WHERE l.name = p_name FOR UPDATE;
  -- Checked under the row lock: an abandon that committed before is seen.
  IF EXISTS (SELECT 1 FROM ${tombstones} b WHERE b.token = p_token) THEN RETURN; END IF;
  v_now := clock_timestamp();
  DELETE FROM ${waiters} w WHERE w.name = p_name AND w.lease_until <= v_now;
  GET DIAGNOSTICS v_dead = ROW_COUNT;
  IF v_token IS NULL OR v_expires <= v_now THEN
    SELECT w.token, w.lease_until INTO v_head, v_head_lease FROM ${waiters} w WHERE w.name = p_name ORDER BY w.ticket LIMIT 1;
    IF v_head IS NULL OR v_head = p_token THEN
      out_fence := greatest(v_last + 1, floor(extract(epoch FROM v_now) * 1000000)::bigint);
      UPDATE ${locks} l SET token = p_token, expires_at = v_now + p_ttl_ms * interval '1 millisecond', fence = out_fence
        WHERE l.name = p_name;
      IF v_head IS NOT NULL THEN DELETE FROM ${waiters} w WHERE w.name = p_name AND w.token = p_token; END IF;
      RETURN;
    END IF;
    -- Dropping dead tickets left the free lock to somebody else: no release will wake it.
    IF v_dead > 0 THEN PERFORM pg_notify(p_channel, v_head); END IF;
  END IF;
  IF NOT p_queue THEN RETURN; END IF;
  INSERT INTO ${waiters} AS w (name, token, ticket, lease_until)
    VALUES (p_name, p_token, nextval('${tickets.replace(/'/g, "''")}'), v_now + p_waiter_ttl_ms * interval '1 millisecond')
    ON CONFLICT (name, token) DO UPDATE SET lease_until = EXCLUDED.lease_until;
  IF v_token IS NOT NULL AND v_expires > v_now THEN
    out_retry := greatest(1, ceil(extract(epoch FROM v_expires - v_now) * 1000))::integer;
  ELSE
    out_retry := greatest(1, ceil(extract(epoch FROM v_head_lease - v_now) * 1000))::integer;
  END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION ${names.fn('lock_release')}(p_name text, p_token text, p_channel text)
RETURNS boolean LANGUAGE plpgsql ${GENERIC_PLANS} AS $fn$
DECLARE
  v_now timestamptz := clock_timestamp();
  v_retired boolean;
BEGIN
  UPDATE ${locks} l SET token = NULL, expires_at = v_now
    WHERE l.name = p_name AND l.token = p_token AND l.expires_at > v_now
    RETURNING l.retired INTO v_retired;
  IF NOT FOUND THEN RETURN false; END IF;
  -- The lock of a flushed storage group (version 6): nothing is left to fence.
  IF v_retired THEN DELETE FROM ${locks} l WHERE l.name = p_name AND l.token IS NULL; END IF;
  PERFORM ${names.fn('lock_wake')}(p_name, v_now, p_channel);
  RETURN true;
END
$fn$;

-- A waiter gives up its place; if that leaves the free lock to the next in line, wake it.
CREATE OR REPLACE FUNCTION ${names.fn('lock_cancel')}(p_name text, p_token text, p_channel text)
RETURNS boolean LANGUAGE plpgsql ${GENERIC_PLANS} AS $fn$
DECLARE
  v_now timestamptz;
  v_free boolean;
BEGIN
  SELECT l.token IS NULL OR l.expires_at <= clock_timestamp() INTO v_free FROM ${locks} l WHERE l.name = p_name FOR UPDATE;
  DELETE FROM ${waiters} w WHERE w.name = p_name AND w.token = p_token;
  IF NOT FOUND THEN RETURN false; END IF;
  v_now := clock_timestamp();
  IF v_free THEN PERFORM ${names.fn('lock_wake')}(p_name, v_now, p_channel); END IF;
  RETURN true;
END
$fn$;

-- For a token whose acquire failed on the client side (it may have run, may still run, or
-- never will): frees the lock if the token got it, leaves the queue, and leaves a tombstone so
-- that an acquire of the token arriving later takes nothing. Answers whether it held the lock.
CREATE OR REPLACE FUNCTION ${names.fn('lock_abandon')}(p_name text, p_token text, p_channel text, p_tombstone_ms integer)
RETURNS boolean LANGUAGE plpgsql ${GENERIC_PLANS} AS $fn$
DECLARE
  v_now timestamptz := clock_timestamp();
  v_held boolean;
  v_removed boolean;
BEGIN
  DELETE FROM ${tombstones} b WHERE b.expires_at <= v_now;
  INSERT INTO ${tombstones} AS b (token, expires_at) VALUES (p_token, v_now + p_tombstone_ms * interval '1 millisecond')
    ON CONFLICT (token) DO UPDATE SET expires_at = EXCLUDED.expires_at;
  PERFORM 1 FROM ${locks} l WHERE l.name = p_name FOR UPDATE;
  UPDATE ${locks} l SET token = NULL, expires_at = v_now WHERE l.name = p_name AND l.token = p_token;
  v_held := FOUND;
  DELETE FROM ${waiters} w WHERE w.name = p_name AND w.token = p_token;
  v_removed := FOUND;
  IF (v_held OR v_removed)
    AND NOT EXISTS (SELECT 1 FROM ${locks} l WHERE l.name = p_name AND l.token IS NOT NULL AND l.expires_at > v_now) THEN
    PERFORM ${names.fn('lock_wake')}(p_name, v_now, p_channel);
  END IF;
  RETURN v_held;
END
$fn$;

-- Version 2 --------------------------------------------------------------------------------

-- The batch function (several operations in one statement) came with version 2; its
-- definition, with the chains of version 4, is in the version 4 section below.

-- Tickets are only compared within the (UNLOGGED) waiters table, which a crash empties too: an
-- UNLOGGED sequence (PostgreSQL 15+) keeps a queueing acquire from writing WAL.
DO $do$
BEGIN
  IF current_setting('server_version_num')::integer >= 150000 THEN
    EXECUTE 'ALTER SEQUENCE ${tickets.replace(/'/g, "''")} SET UNLOGGED';
  END IF;
END
$do$;

-- Version 3 --------------------------------------------------------------------------------

-- A session's rows are updated on every commit (its data entry, its guard, its lock row): room
-- left in each page lets the new version go beside the old one (a HOT update: no index entry,
-- and the old one is pruned without a vacuum). Applies to pages filled from now on.
ALTER TABLE ${entries} SET (fillfactor = 80);
ALTER TABLE ${locks} SET (fillfactor = 70);

-- Versions 4 and 5 --------------------------------------------------------------------------

-- Version 5 changes no table: write (above) and batch (below) take mustMatch and copyFrom,
-- and batch's up-front locks create missing lock rows; the older signatures stay, as wrappers.

-- Several operations in one transaction, in the order given; answers one text per operation:
-- a write's result, 'true'/'false' for a remove (whether a live entry was removed), the live
-- count for a flush, 'skipped' for one that required an operation that did not apply, or
-- 'error <SQLSTATE> <message>' for one that raised (its own work is rolled back, the others'
-- stays). Per operation: p_kinds ('write' | 'remove' | 'flush'), p_namespaces, p_nows, p_keys (a
-- write's guard id, a remove's id, a flush's tag) and a write's guard fields; a write's lists
-- are slices of the flat arrays, p_*_ends[i] being the end of operation i's slice.
-- Chains (version 4): p_after[p_after_ends[i - 1] + 1 : p_after_ends[i]] lists the earlier
-- operations (1-based positions below i) that operation i requires: it runs only if each of them
-- applied (a write answered 'ok', a remove removed a live entry, a flush ran), else it writes
-- nothing and answers 'skipped'; a position that is not an earlier operation counts as not
-- applied. An operation that raised did not apply, so what requires it is skipped.
-- Version 5: a write's mustMatch entries are slices of p_must_match_ids/p_must_match_values
-- (ends in p_must_match_ends), its copyFrom group p_copy_froms[i] (NULL: none); NULL arrays:
-- none at all.
CREATE OR REPLACE FUNCTION ${names.fn('batch')}(
${BATCH_OPERATION_PARAMETERS},
  p_after_ends integer[], p_after integer[],
  p_must_match_ends integer[], p_must_match_ids text[], p_must_match_values text[], p_copy_froms text[]
) RETURNS text[] LANGUAGE plpgsql ${GENERIC_PLANS} AS $fn$
DECLARE
  v_count integer := coalesce(cardinality(p_kinds), 0);
  v_results text[] := '{}';
  v_applied boolean[] := '{}';
  v_result text;
  v_live boolean;
  v_ready boolean;
  v_namespace text;
  v_ids text[];
  v_tags text[];
  v_groups text[];
  v_lock_names text[];
  v_copy_locks text[];
  v_key integer;
BEGIN
  -- Operations out of namespace order, or several in one namespace (a chain): every lock they
  -- will wait for is taken first, in the schema's lock order (see the design notes), here at
  -- the top level so that no rolled-back block gives one up. Calls in namespace order (what the
  -- batcher sends for independent operations, and all an instance of version 3 sends) need not.
  FOR i IN 2 .. v_count LOOP
    CONTINUE WHEN p_namespaces[i - 1] COLLATE "C" < p_namespaces[i] COLLATE "C";
    FOR v_namespace IN SELECT DISTINCT n.ns COLLATE "C" FROM unnest(p_namespaces) AS n(ns) ORDER BY 1 LOOP
      v_ids := '{}';
      v_tags := '{}';
      v_groups := '{}';
      v_lock_names := '{}';
      v_copy_locks := '{}';
      FOR j IN 1 .. v_count LOOP
        CONTINUE WHEN p_namespaces[j] IS DISTINCT FROM v_namespace;
        IF p_kinds[j] = 'write' THEN
          IF p_keys[j] IS NOT NULL THEN
            v_groups := v_groups || split_part(p_keys[j], '.', 1);
            v_ids := v_ids || p_keys[j];
          END IF;
          -- A copy's lock name (version 7) is the source's: locked if it exists, never created.
          IF p_lock_names[j] IS NOT NULL AND p_copy_froms[j] IS NULL THEN v_lock_names := v_lock_names || p_lock_names[j]; END IF;
          IF p_lock_names[j] IS NOT NULL AND p_copy_froms[j] IS NOT NULL THEN v_copy_locks := v_copy_locks || p_lock_names[j]; END IF;
          -- A copy's source group: its advisory lock with the others, in key order (see write).
          IF p_copy_froms[j] IS NOT NULL THEN v_groups := v_groups || p_copy_froms[j]; END IF;
          v_ids := v_ids
            || p_must_exist[coalesce(p_must_exist_ends[j - 1], 0) + 1 : p_must_exist_ends[j]]
            || coalesce(p_must_match_ids[coalesce(p_must_match_ends[j - 1], 0) + 1 : p_must_match_ends[j]], '{}')
            || p_ids[coalesce(p_set_ends[j - 1], 0) + 1 : p_set_ends[j]]
            || p_removes[coalesce(p_remove_ends[j - 1], 0) + 1 : p_remove_ends[j]];
        ELSIF p_kinds[j] = 'remove' THEN
          v_ids := v_ids || p_keys[j];
        ELSIF p_kinds[j] = 'flush' THEN
          v_groups := v_groups || p_keys[j];
          v_tags := v_tags || p_keys[j];
        END IF;
      END LOOP;
      IF cardinality(v_lock_names) + cardinality(v_copy_locks) > 0 THEN
        -- Missing lock rows first (free, as lock_acquire creates them), so that all are locked
        -- here, before the advisory locks (see the design notes; version 5).
        INSERT INTO ${locks} AS l (name, token, expires_at, fence)
          SELECT DISTINCT n.name COLLATE "C", NULL::text, '-infinity'::timestamptz, 0::bigint
            FROM unnest(v_lock_names) AS n(name) ORDER BY 1
          ON CONFLICT (name) DO NOTHING;
        PERFORM 1 FROM ${locks} l WHERE l.name = ANY (v_lock_names || v_copy_locks) ORDER BY l.name FOR UPDATE;
      END IF;
      -- In the order of the lock keys themselves (two groups whose hashes collide share a lock).
      FOR v_key IN SELECT DISTINCT hashtext(v_namespace || ' ' || g.g) FROM unnest(v_groups) AS g(g) ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(hashtext(${lockClass}), v_key);
      END LOOP;
      -- A flush's rows as they are now: rows joining its tag later do so under its advisory lock.
      IF cardinality(v_tags) > 0 THEN
        SELECT v_ids || coalesce(array_agg(t.id), '{}') INTO v_ids
          FROM ${tags} t WHERE t.namespace = v_namespace AND t.tag = ANY (v_tags);
      END IF;
      IF cardinality(v_ids) > 0 THEN
        PERFORM 1 FROM ${entries} e WHERE e.namespace = v_namespace AND e.id = ANY (v_ids) ORDER BY e.id FOR UPDATE;
      END IF;
    END LOOP;
    EXIT;
  END LOOP;
  -- All operations in one block (one subtransaction: the usual case, nothing raises); only when
  -- one of them raises (which rolled back all of their work) do they run again, each in a block
  -- of its own, so that an exception undoes its own operation only (and skips what requires
  -- it). Either way each answers as if it had been sent alone, after what it requires.
  BEGIN
    FOR i IN 1 .. v_count LOOP
${ready('      ')}
      IF v_ready THEN
${dispatch('        ')}
      ELSE
        v_result := 'skipped';
      END IF;
${record('      ')}
    END LOOP;
    RETURN v_results;
  EXCEPTION WHEN OTHERS THEN
    v_results := '{}';
    v_applied := '{}';
  END;
  FOR i IN 1 .. v_count LOOP
${ready('    ')}
    IF v_ready THEN
      BEGIN
${dispatch('        ')}
      EXCEPTION WHEN OTHERS THEN
        v_result := 'error ' || SQLSTATE || ' ' || SQLERRM;
      END;
    ELSE
      v_result := 'skipped';
    END IF;
${record('    ')}
  END LOOP;
  RETURN v_results;
END
$fn$;

-- The version-4 signature (chains, no mustMatch, no copyFrom), for app instances of the release
-- before during a rolling upgrade: they commit metadata and move storage under the lock, so
-- their calls run and answer exactly as in version 4. Restarted, such an instance refuses this
-- database in migrate() (newer than it knows).
CREATE OR REPLACE FUNCTION ${names.fn('batch')}(
${BATCH_OPERATION_PARAMETERS},
  p_after_ends integer[], p_after integer[]
) RETURNS text[] LANGUAGE sql AS $fn$
  SELECT ${names.fn('batch')}(p_kinds, p_namespaces, p_nows, p_keys, p_guard_fences, p_guard_values,
    p_guard_creates, p_guard_lifetimes, p_guard_expires, p_lock_names, p_max_entries, p_uncounted_prefixes,
    p_guard_tag_ends, p_guard_tags, p_must_exist_ends, p_must_exist, p_set_ends, p_ids, p_values, p_expires,
    p_tag_ends, p_tag_ids, p_tag_tags, p_remove_ends, p_removes, p_after_ends, p_after,
    NULL::integer[], NULL::text[], NULL::text[], NULL::text[])
$fn$;

-- The version-2 signature, for app instances of releases before version 4 during a rolling upgrade.
-- Such an instance sends no chains (its backends leave a chain to its frontend, which sends
-- each step once the ones before it applied) and at most one operation per namespace, in
-- namespace order: no lock is taken up front and each operation runs and answers exactly as in
-- version 3. Restarted, it refuses this database in migrate() (newer than it knows).
CREATE OR REPLACE FUNCTION ${names.fn('batch')}(
${BATCH_OPERATION_PARAMETERS}
) RETURNS text[] LANGUAGE sql AS $fn$
  SELECT ${names.fn('batch')}(p_kinds, p_namespaces, p_nows, p_keys, p_guard_fences, p_guard_values,
    p_guard_creates, p_guard_lifetimes, p_guard_expires, p_lock_names, p_max_entries, p_uncounted_prefixes,
    p_guard_tag_ends, p_guard_tags, p_must_exist_ends, p_must_exist, p_set_ends, p_ids, p_values, p_expires,
    p_tag_ends, p_tag_ids, p_tag_tags, p_remove_ends, p_removes, NULL::integer[], NULL::integer[],
    NULL::integer[], NULL::text[], NULL::text[], NULL::text[])
$fn$;

INSERT INTO ${names.versions()} (version) VALUES (${POSTGRES_SCHEMA_VERSION}) ON CONFLICT (version) DO NOTHING;
`;
}

/**
 * The SQL that creates (or completes) the session schema for the given `schema` and
 * `tablePrefix`: tables, indexes and functions, then the version row. Idempotent: safe to run
 * again. For teams that run their own migrations instead of `migrate()`.
 * @throws InvalidOptionException for a bad schema or prefix.
 */
export function postgresSchemaSql(options: PostgresSchemaOptions = {}): string {
  return schemaStatements(new PostgresNames(options)).trimStart();
}

/** {@link postgresSchemaSql} for the defaults: schema `public`, table prefix `nest_session_`. */
export const POSTGRES_SCHEMA_SQL: string = postgresSchemaSql();
