-- What migrate() of the release before created: schema version 4, postgresSchemaSql() for the defaults
-- (schema public, table prefix nest_session_) at commit a5f205a. The starting point of the
-- version-5 upgrade test (test/integration/postgres-moves-groups.spec.ts); not part of the package.
CREATE SCHEMA IF NOT EXISTS "public";

CREATE TABLE IF NOT EXISTS "public"."nest_session_schema_version" (
  version integer PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS "public"."nest_session_entries" (
  namespace text COLLATE "C" NOT NULL,
  id text COLLATE "C" NOT NULL,
  value text NOT NULL,
  expires_at timestamptz,
  fence double precision,
  PRIMARY KEY (namespace, id)
);
CREATE INDEX IF NOT EXISTS "nest_session_entries_expiry" ON "public"."nest_session_entries" (namespace, expires_at, id) WHERE expires_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS "public"."nest_session_tags" (
  namespace text COLLATE "C" NOT NULL,
  tag text COLLATE "C" NOT NULL,
  id text COLLATE "C" NOT NULL,
  PRIMARY KEY (namespace, tag, id),
  FOREIGN KEY (namespace, id) REFERENCES "public"."nest_session_entries" (namespace, id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS "nest_session_tags_entry" ON "public"."nest_session_tags" (namespace, id);

CREATE UNLOGGED TABLE IF NOT EXISTS "public"."nest_session_locks" (
  name text COLLATE "C" PRIMARY KEY,
  token text,
  expires_at timestamptz NOT NULL,
  fence bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS "nest_session_locks_expiry" ON "public"."nest_session_locks" (expires_at);

CREATE SEQUENCE IF NOT EXISTS "public"."nest_session_lock_tickets";

CREATE UNLOGGED TABLE IF NOT EXISTS "public"."nest_session_lock_waiters" (
  name text COLLATE "C" NOT NULL,
  token text COLLATE "C" NOT NULL,
  ticket bigint NOT NULL,
  lease_until timestamptz NOT NULL,
  PRIMARY KEY (name, token)
);
CREATE INDEX IF NOT EXISTS "nest_session_lock_waiters_queue" ON "public"."nest_session_lock_waiters" (name, ticket);

CREATE UNLOGGED TABLE IF NOT EXISTS "public"."nest_session_lock_tombstones" (
  token text COLLATE "C" PRIMARY KEY,
  expires_at timestamptz NOT NULL
);

-- One commit: answers 'ok', 'missing' (guard or a mustExist entry gone or expired), 'fenced'
-- (a newer fence has written), 'locked' (an unlocked write found the lock held) or 'full'
-- (p_max_entries: the guard's group would hold more entries than that; version 2).
-- Version 3 answers the same with fewer statements on the usual paths (see the comments below).
CREATE OR REPLACE FUNCTION "public"."nest_session_write"(
  p_namespace text, p_now timestamptz,
  p_guard_id text, p_guard_fence double precision, p_guard_value text, p_guard_create boolean,
  p_guard_tags text[], p_guard_lifetime boolean, p_guard_expires timestamptz,
  p_must_exist text[],
  p_ids text[], p_values text[], p_expires timestamptz[],
  p_tag_ids text[], p_tag_tags text[],
  p_removes text[],
  p_lock_name text,
  p_max_entries integer, p_uncounted_prefix text
) RETURNS text LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
DECLARE
  v_fence double precision;
  v_found boolean := false;
  v_live boolean := false;
  v_created boolean := false;
  v_done boolean := false;
  v_guard_written boolean;
  v_guard_pending boolean := false;
  v_count integer;
  v_group text;
  v_skip text;
  v_lock_token text;
  v_lock_expires timestamptz;
  v_drawn bigint;
BEGIN
  -- An unlocked write (the caller holds no lock): it applies only while nobody holds the lock
  -- named p_lock_name, and draws the fence as lock_acquire would, so the lock's next holder
  -- gets a greater one and a holder whose lock expired before is fenced off. The usual case
  -- (the lock row exists and is free) is one UPDATE, which waits for a concurrent holder of
  -- the row and re-checks the free condition on the row it then finds.
  IF p_lock_name IS NOT NULL THEN
    UPDATE "public"."nest_session_locks" l SET fence = greatest(l.fence + 1, floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
      WHERE l.name = p_lock_name AND (l.token IS NULL OR l.expires_at <= clock_timestamp())
      RETURNING l.fence INTO v_drawn;
    IF NOT FOUND THEN
      -- Held, or no row yet: look under the row lock (created free if missing).
      SELECT l.token, l.expires_at INTO v_lock_token, v_lock_expires
        FROM "public"."nest_session_locks" l WHERE l.name = p_lock_name FOR UPDATE;
      IF NOT FOUND THEN
        INSERT INTO "public"."nest_session_locks" AS l (name, token, expires_at, fence) VALUES (p_lock_name, NULL, clock_timestamp(), 0)
          ON CONFLICT (name) DO NOTHING;
        SELECT l.token, l.expires_at INTO v_lock_token, v_lock_expires
          FROM "public"."nest_session_locks" l WHERE l.name = p_lock_name FOR UPDATE;
      END IF;
      IF v_lock_token IS NOT NULL AND v_lock_expires > clock_timestamp() THEN RETURN 'locked'; END IF;
      UPDATE "public"."nest_session_locks" l SET fence = greatest(l.fence + 1, floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
        WHERE l.name = p_lock_name
        RETURNING l.fence INTO v_drawn;
    END IF;
    p_guard_fence := v_drawn;
    p_guard_value := v_drawn::text;
  END IF;
  IF p_guard_id IS NOT NULL THEN
    -- Serialises the guarded writes and destroys (flush_by_tag) of one group.
    PERFORM pg_advisory_xact_lock(hashtext('public.nest_session_'), hashtext(p_namespace || ' ' || split_part(p_guard_id, '.', 1)));
  END IF;
  IF cardinality(p_must_exist) > 0 THEN
    PERFORM 1 FROM "public"."nest_session_entries" e
      WHERE e.namespace = p_namespace AND e.id = ANY (p_must_exist) AND (e.expires_at IS NULL OR e.expires_at > p_now)
      ORDER BY e.id FOR UPDATE;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count < cardinality(p_must_exist) THEN RETURN 'missing'; END IF;
  END IF;
  IF p_max_entries IS NOT NULL AND p_guard_id IS NOT NULL THEN
    v_group := split_part(p_guard_id, '.', 1);
    v_skip := CASE WHEN p_uncounted_prefix IS NULL THEN NULL ELSE v_group || '.' || p_uncounted_prefix END;
    SELECT (SELECT count(*) FROM (
      SELECT t.id FROM "public"."nest_session_tags" t
        WHERE t.namespace = p_namespace AND t.tag = v_group
          AND (SELECT (c.expires_at IS NULL OR c.expires_at > p_now) FROM "public"."nest_session_entries" c WHERE c.namespace = p_namespace AND c.id = t.id)
      UNION
      SELECT n.id FROM unnest(p_tag_ids, p_tag_tags) AS n(id, tag) WHERE n.tag = v_group
    ) m
    WHERE m.id <> p_guard_id AND NOT (m.id = ANY (p_removes))
      AND (v_skip IS NULL OR left(m.id, length(v_skip)) <> v_skip)) INTO v_count;
    IF v_count > p_max_entries THEN RETURN 'full'; END IF;
  END IF;
  -- The usual commit of an existing session checks its guard and updates it in one statement,
  -- here, nothing being refused after this. Not for a guard the sets write or the removes
  -- remove (updated after them, below: a batch that removed it, a destroy, leaves it removed),
  -- nor for a creating commit (its guard is usually missing); nor when the update finds nothing
  -- to do: those read the guard first and go on as version 2 did.
  v_guard_written := p_guard_id = ANY (p_ids) OR p_guard_id = ANY (p_removes);
  IF p_guard_id IS NOT NULL AND NOT v_guard_written AND NOT p_guard_create THEN
    -- Skipped when it would change nothing (the same fence, no new lifetime): no dead row per commit.
    UPDATE "public"."nest_session_entries" e
      SET value = p_guard_value, fence = p_guard_fence,
          expires_at = CASE WHEN p_guard_lifetime THEN p_guard_expires ELSE e.expires_at END
      WHERE e.namespace = p_namespace AND e.id = p_guard_id AND (e.expires_at IS NULL OR e.expires_at > p_now)
        AND (e.fence IS NULL OR e.fence <= p_guard_fence)
        AND (p_guard_lifetime OR e.fence IS DISTINCT FROM p_guard_fence);
    v_done := FOUND;
  END IF;
  IF p_guard_id IS NOT NULL AND NOT v_done THEN
    SELECT true, e.fence, (e.expires_at IS NULL OR e.expires_at > p_now) INTO v_found, v_fence, v_live
      FROM "public"."nest_session_entries" e WHERE e.namespace = p_namespace AND e.id = p_guard_id;
    IF NOT FOUND THEN
      v_found := false;
      v_live := false;
    END IF;
    IF NOT v_live THEN
      IF NOT p_guard_create THEN RETURN 'missing'; END IF;
      -- An expired guard counts as missing and is replaced, memberships included.
      IF v_found THEN
        DELETE FROM "public"."nest_session_entries" e WHERE e.namespace = p_namespace AND e.id = p_guard_id;
      END IF;
      v_created := true;
      IF v_guard_written THEN
        -- The guard and its memberships in one statement (the foreign key is checked at its end).
        WITH guard AS (
          INSERT INTO "public"."nest_session_entries" AS e (namespace, id, value, expires_at, fence)
            VALUES (p_namespace, p_guard_id, p_guard_value, p_guard_expires, p_guard_fence)
            ON CONFLICT (namespace, id) DO UPDATE
              SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, fence = EXCLUDED.fence
        )
        INSERT INTO "public"."nest_session_tags" (namespace, tag, id)
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
    INSERT INTO "public"."nest_session_entries" AS e (namespace, id, value, expires_at, fence)
      SELECT p_namespace, s.id, s.value, s.expires_at, NULL
        FROM unnest(p_ids, p_values, p_expires) AS s(id, value, expires_at) ORDER BY s.id
      ON CONFLICT (namespace, id) DO UPDATE
        SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, fence = NULL;
    -- Memberships the sets no longer carry go, new ones come, in one statement (disjoint rows).
    WITH stale AS (
      DELETE FROM "public"."nest_session_tags" t
        WHERE t.namespace = p_namespace AND t.id = ANY (p_ids)
          AND NOT EXISTS (SELECT 1 FROM unnest(p_tag_ids, p_tag_tags) AS n(id, tag) WHERE n.id = t.id AND n.tag = t.tag)
    )
    INSERT INTO "public"."nest_session_tags" (namespace, tag, id)
      SELECT p_namespace, n.tag, n.id FROM unnest(p_tag_ids, p_tag_tags) AS n(id, tag)
      ON CONFLICT DO NOTHING;
  ELSIF v_guard_pending THEN
    WITH s AS (
      SELECT s.id, s.value, s.expires_at, NULL::double precision AS fence
        FROM unnest(p_ids, p_values, p_expires) AS s(id, value, expires_at)
      UNION ALL
      SELECT p_guard_id, p_guard_value, p_guard_expires, p_guard_fence WHERE v_guard_pending
    ), up AS (
      INSERT INTO "public"."nest_session_entries" AS e (namespace, id, value, expires_at, fence)
        SELECT p_namespace, s.id, s.value, s.expires_at, s.fence FROM s ORDER BY s.id
        ON CONFLICT (namespace, id) DO UPDATE
          SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, fence = EXCLUDED.fence
        -- xmax is 0 on a row the statement inserted, the updating transaction's on one it updated.
        RETURNING e.id, e.xmax = 0 AS inserted
    ), born AS (
      INSERT INTO "public"."nest_session_tags" (namespace, tag, id)
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
      WITH stale AS (
        DELETE FROM "public"."nest_session_tags" t
          WHERE t.namespace = p_namespace AND t.id = ANY (p_ids)
            AND NOT EXISTS (SELECT 1 FROM unnest(p_tag_ids, p_tag_tags) AS n(id, tag) WHERE n.id = t.id AND n.tag = t.tag)
      )
      INSERT INTO "public"."nest_session_tags" (namespace, tag, id)
        SELECT p_namespace, n.tag, n.id FROM unnest(p_tag_ids, p_tag_tags) AS n(id, tag)
        UNION ALL
        SELECT p_namespace, g.tag, p_guard_id FROM unnest(p_guard_tags) AS g(tag) WHERE v_guard_pending
        ON CONFLICT DO NOTHING;
    END IF;
  END IF;
  IF cardinality(p_removes) > 0 THEN
    DELETE FROM "public"."nest_session_entries" e WHERE e.namespace = p_namespace AND e.id = ANY (p_removes);
  END IF;
  -- The guard keeps its tags (and its expiry unless a lifetime was given); a batch that
  -- removed it (a destroy) leaves it removed. Skipped when it would change nothing (the same
  -- fence, no new lifetime): no dead row per commit; and when done above.
  IF p_guard_id IS NOT NULL AND NOT v_done AND (NOT v_created OR p_guard_id = ANY (p_ids))
    AND (p_guard_lifetime OR v_fence IS DISTINCT FROM p_guard_fence OR v_created OR p_guard_id = ANY (p_ids)) THEN
    UPDATE "public"."nest_session_entries" e
      SET value = p_guard_value, fence = p_guard_fence,
          expires_at = CASE WHEN p_guard_lifetime THEN p_guard_expires ELSE e.expires_at END
      WHERE e.namespace = p_namespace AND e.id = p_guard_id;
  END IF;
  RETURN 'ok';
END
$fn$;

-- The version-1 signature (no entry cap), for app instances of the release before during an upgrade.
CREATE OR REPLACE FUNCTION "public"."nest_session_write"(
  p_namespace text, p_now timestamptz,
  p_guard_id text, p_guard_fence double precision, p_guard_value text, p_guard_create boolean,
  p_guard_tags text[], p_guard_lifetime boolean, p_guard_expires timestamptz,
  p_must_exist text[],
  p_ids text[], p_values text[], p_expires timestamptz[],
  p_tag_ids text[], p_tag_tags text[],
  p_removes text[],
  p_lock_name text
) RETURNS text LANGUAGE sql AS $fn$
  SELECT "public"."nest_session_write"(p_namespace, p_now, p_guard_id, p_guard_fence, p_guard_value, p_guard_create,
    p_guard_tags, p_guard_lifetime, p_guard_expires, p_must_exist, p_ids, p_values, p_expires,
    p_tag_ids, p_tag_tags, p_removes, p_lock_name, NULL::integer, NULL::text)
$fn$;

-- Removes every entry carrying the tag (expired ones too); answers how many were live.
CREATE OR REPLACE FUNCTION "public"."nest_session_flush_by_tag"(p_namespace text, p_tag text, p_now timestamptz)
RETURNS integer LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
DECLARE
  v_live integer;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('public.nest_session_'), hashtext(p_namespace || ' ' || p_tag));
  WITH doomed AS (
    SELECT e.id, (e.expires_at IS NULL OR e.expires_at > p_now) AS live
      FROM "public"."nest_session_tags" t JOIN "public"."nest_session_entries" e ON e.namespace = t.namespace AND e.id = t.id
      WHERE t.namespace = p_namespace AND t.tag = p_tag
      ORDER BY e.id FOR UPDATE OF e
  ), gone AS (
    DELETE FROM "public"."nest_session_entries" e USING doomed d WHERE e.namespace = p_namespace AND e.id = d.id RETURNING d.live
  )
  SELECT count(*) FILTER (WHERE gone.live) INTO v_live FROM gone;
  RETURN v_live;
END
$fn$;

-- Wakes the first live waiter of a lock (its token is the NOTIFY payload), after dropping the
-- tickets of waiters that stopped refreshing them.
CREATE OR REPLACE FUNCTION "public"."nest_session_lock_wake"(p_name text, p_now timestamptz, p_channel text)
RETURNS void LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
DECLARE
  v_head text;
BEGIN
  DELETE FROM "public"."nest_session_lock_waiters" w WHERE w.name = p_name AND w.lease_until <= p_now;
  SELECT w.token INTO v_head FROM "public"."nest_session_lock_waiters" w WHERE w.name = p_name ORDER BY w.ticket LIMIT 1;
  IF v_head IS NOT NULL THEN PERFORM pg_notify(p_channel, v_head); END IF;
END
$fn$;

-- One look at a lock: out_fence when taken, else out_retry, the ms worth sleeping without a
-- wake-up. The fence is max(last fence of the key + 1, database clock in microseconds).
CREATE OR REPLACE FUNCTION "public"."nest_session_lock_acquire"(
  p_name text, p_token text, p_ttl_ms integer, p_queue boolean, p_waiter_ttl_ms integer, p_channel text,
  OUT out_fence bigint, OUT out_retry integer
) LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
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
  INSERT INTO "public"."nest_session_locks" AS l (name, token, expires_at, fence) VALUES (p_name, NULL, '-infinity', 0)
    ON CONFLICT (name) DO NOTHING;
  SELECT l.token, l.expires_at, l.fence INTO v_token, v_expires, v_last FROM "public"."nest_session_locks" l WHERE l.name = p_name FOR UPDATE;
  -- Checked under the row lock: an abandon that committed before is seen.
  IF EXISTS (SELECT 1 FROM "public"."nest_session_lock_tombstones" b WHERE b.token = p_token) THEN RETURN; END IF;
  v_now := clock_timestamp();
  DELETE FROM "public"."nest_session_lock_waiters" w WHERE w.name = p_name AND w.lease_until <= v_now;
  GET DIAGNOSTICS v_dead = ROW_COUNT;
  IF v_token IS NULL OR v_expires <= v_now THEN
    SELECT w.token, w.lease_until INTO v_head, v_head_lease FROM "public"."nest_session_lock_waiters" w WHERE w.name = p_name ORDER BY w.ticket LIMIT 1;
    IF v_head IS NULL OR v_head = p_token THEN
      out_fence := greatest(v_last + 1, floor(extract(epoch FROM v_now) * 1000000)::bigint);
      UPDATE "public"."nest_session_locks" l SET token = p_token, expires_at = v_now + p_ttl_ms * interval '1 millisecond', fence = out_fence
        WHERE l.name = p_name;
      IF v_head IS NOT NULL THEN DELETE FROM "public"."nest_session_lock_waiters" w WHERE w.name = p_name AND w.token = p_token; END IF;
      RETURN;
    END IF;
    -- Dropping dead tickets left the free lock to somebody else: no release will wake it.
    IF v_dead > 0 THEN PERFORM pg_notify(p_channel, v_head); END IF;
  END IF;
  IF NOT p_queue THEN RETURN; END IF;
  INSERT INTO "public"."nest_session_lock_waiters" AS w (name, token, ticket, lease_until)
    VALUES (p_name, p_token, nextval('"public"."nest_session_lock_tickets"'), v_now + p_waiter_ttl_ms * interval '1 millisecond')
    ON CONFLICT (name, token) DO UPDATE SET lease_until = EXCLUDED.lease_until;
  IF v_token IS NOT NULL AND v_expires > v_now THEN
    out_retry := greatest(1, ceil(extract(epoch FROM v_expires - v_now) * 1000))::integer;
  ELSE
    out_retry := greatest(1, ceil(extract(epoch FROM v_head_lease - v_now) * 1000))::integer;
  END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION "public"."nest_session_lock_release"(p_name text, p_token text, p_channel text)
RETURNS boolean LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
DECLARE
  v_now timestamptz := clock_timestamp();
BEGIN
  UPDATE "public"."nest_session_locks" l SET token = NULL, expires_at = v_now
    WHERE l.name = p_name AND l.token = p_token AND l.expires_at > v_now;
  IF NOT FOUND THEN RETURN false; END IF;
  PERFORM "public"."nest_session_lock_wake"(p_name, v_now, p_channel);
  RETURN true;
END
$fn$;

-- A waiter gives up its place; if that leaves the free lock to the next in line, wake it.
CREATE OR REPLACE FUNCTION "public"."nest_session_lock_cancel"(p_name text, p_token text, p_channel text)
RETURNS boolean LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
DECLARE
  v_now timestamptz;
  v_free boolean;
BEGIN
  SELECT l.token IS NULL OR l.expires_at <= clock_timestamp() INTO v_free FROM "public"."nest_session_locks" l WHERE l.name = p_name FOR UPDATE;
  DELETE FROM "public"."nest_session_lock_waiters" w WHERE w.name = p_name AND w.token = p_token;
  IF NOT FOUND THEN RETURN false; END IF;
  v_now := clock_timestamp();
  IF v_free THEN PERFORM "public"."nest_session_lock_wake"(p_name, v_now, p_channel); END IF;
  RETURN true;
END
$fn$;

-- For a token whose acquire failed on the client side (it may have run, may still run, or
-- never will): frees the lock if the token got it, leaves the queue, and leaves a tombstone so
-- that an acquire of the token arriving later takes nothing. Answers whether it held the lock.
CREATE OR REPLACE FUNCTION "public"."nest_session_lock_abandon"(p_name text, p_token text, p_channel text, p_tombstone_ms integer)
RETURNS boolean LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
DECLARE
  v_now timestamptz := clock_timestamp();
  v_held boolean;
  v_removed boolean;
BEGIN
  DELETE FROM "public"."nest_session_lock_tombstones" b WHERE b.expires_at <= v_now;
  INSERT INTO "public"."nest_session_lock_tombstones" AS b (token, expires_at) VALUES (p_token, v_now + p_tombstone_ms * interval '1 millisecond')
    ON CONFLICT (token) DO UPDATE SET expires_at = EXCLUDED.expires_at;
  PERFORM 1 FROM "public"."nest_session_locks" l WHERE l.name = p_name FOR UPDATE;
  UPDATE "public"."nest_session_locks" l SET token = NULL, expires_at = v_now WHERE l.name = p_name AND l.token = p_token;
  v_held := FOUND;
  DELETE FROM "public"."nest_session_lock_waiters" w WHERE w.name = p_name AND w.token = p_token;
  v_removed := FOUND;
  IF (v_held OR v_removed)
    AND NOT EXISTS (SELECT 1 FROM "public"."nest_session_locks" l WHERE l.name = p_name AND l.token IS NOT NULL AND l.expires_at > v_now) THEN
    PERFORM "public"."nest_session_lock_wake"(p_name, v_now, p_channel);
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
    EXECUTE 'ALTER SEQUENCE "public"."nest_session_lock_tickets" SET UNLOGGED';
  END IF;
END
$do$;

-- Version 3 --------------------------------------------------------------------------------

-- A session's rows are updated on every commit (its data entry, its guard, its lock row): room
-- left in each page lets the new version go beside the old one (a HOT update: no index entry,
-- and the old one is pruned without a vacuum). Applies to pages filled from now on.
ALTER TABLE "public"."nest_session_entries" SET (fillfactor = 80);
ALTER TABLE "public"."nest_session_locks" SET (fillfactor = 70);

-- Version 4 --------------------------------------------------------------------------------

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
CREATE OR REPLACE FUNCTION "public"."nest_session_batch"(
p_kinds text[], p_namespaces text[], p_nows timestamptz[], p_keys text[],
  p_guard_fences double precision[], p_guard_values text[], p_guard_creates boolean[],
  p_guard_lifetimes boolean[], p_guard_expires timestamptz[], p_lock_names text[],
  p_max_entries integer[], p_uncounted_prefixes text[],
  p_guard_tag_ends integer[], p_guard_tags text[],
  p_must_exist_ends integer[], p_must_exist text[],
  p_set_ends integer[], p_ids text[], p_values text[], p_expires timestamptz[],
  p_tag_ends integer[], p_tag_ids text[], p_tag_tags text[],
  p_remove_ends integer[], p_removes text[],
  p_after_ends integer[], p_after integer[]
) RETURNS text[] LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
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
      FOR j IN 1 .. v_count LOOP
        CONTINUE WHEN p_namespaces[j] IS DISTINCT FROM v_namespace;
        IF p_kinds[j] = 'write' THEN
          IF p_keys[j] IS NOT NULL THEN
            v_groups := v_groups || split_part(p_keys[j], '.', 1);
            v_ids := v_ids || p_keys[j];
          END IF;
          IF p_lock_names[j] IS NOT NULL THEN v_lock_names := v_lock_names || p_lock_names[j]; END IF;
          v_ids := v_ids
            || p_must_exist[coalesce(p_must_exist_ends[j - 1], 0) + 1 : p_must_exist_ends[j]]
            || p_ids[coalesce(p_set_ends[j - 1], 0) + 1 : p_set_ends[j]]
            || p_removes[coalesce(p_remove_ends[j - 1], 0) + 1 : p_remove_ends[j]];
        ELSIF p_kinds[j] = 'remove' THEN
          v_ids := v_ids || p_keys[j];
        ELSIF p_kinds[j] = 'flush' THEN
          v_groups := v_groups || p_keys[j];
          v_tags := v_tags || p_keys[j];
        END IF;
      END LOOP;
      IF cardinality(v_lock_names) > 0 THEN
        PERFORM 1 FROM "public"."nest_session_locks" l WHERE l.name = ANY (v_lock_names) ORDER BY l.name FOR UPDATE;
      END IF;
      -- In the order of the lock keys themselves (two groups whose hashes collide share a lock).
      FOR v_key IN SELECT DISTINCT hashtext(v_namespace || ' ' || g.g) FROM unnest(v_groups) AS g(g) ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(hashtext('public.nest_session_'), v_key);
      END LOOP;
      -- A flush's rows as they are now: rows joining its tag later do so under its advisory lock.
      IF cardinality(v_tags) > 0 THEN
        SELECT v_ids || coalesce(array_agg(t.id), '{}') INTO v_ids
          FROM "public"."nest_session_tags" t WHERE t.namespace = v_namespace AND t.tag = ANY (v_tags);
      END IF;
      IF cardinality(v_ids) > 0 THEN
        PERFORM 1 FROM "public"."nest_session_entries" e WHERE e.namespace = v_namespace AND e.id = ANY (v_ids) ORDER BY e.id FOR UPDATE;
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
      v_ready := true;
      FOR j IN coalesce(p_after_ends[i - 1], 0) + 1 .. coalesce(p_after_ends[i], 0) LOOP
        IF NOT coalesce(p_after[j] < i AND v_applied[p_after[j]], false) THEN v_ready := false; END IF;
      END LOOP;
      IF v_ready THEN
        IF p_kinds[i] = 'write' THEN
          v_result := "public"."nest_session_write"(
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
            p_lock_names[i], p_max_entries[i], p_uncounted_prefixes[i]);
        ELSIF p_kinds[i] = 'remove' THEN
          v_live := NULL;
          DELETE FROM "public"."nest_session_entries" e WHERE e.namespace = p_namespaces[i] AND e.id = p_keys[i]
            RETURNING (e.expires_at IS NULL OR e.expires_at > p_nows[i]) INTO v_live;
          v_result := CASE WHEN v_live THEN 'true' ELSE 'false' END;
        ELSIF p_kinds[i] = 'flush' THEN
          v_result := "public"."nest_session_flush_by_tag"(p_namespaces[i], p_keys[i], p_nows[i])::text;
        ELSE
          v_result := 'error 22023 unknown operation ' || coalesce(p_kinds[i], 'NULL');
        END IF;
      ELSE
        v_result := 'skipped';
      END IF;
      v_results := v_results || v_result;
      v_applied := v_applied || CASE p_kinds[i]
        WHEN 'write' THEN v_result = 'ok'
        WHEN 'remove' THEN v_result = 'true'
        WHEN 'flush' THEN v_result <> 'skipped' AND v_result NOT LIKE 'error %'
        ELSE false END;
    END LOOP;
    RETURN v_results;
  EXCEPTION WHEN OTHERS THEN
    v_results := '{}';
    v_applied := '{}';
  END;
  FOR i IN 1 .. v_count LOOP
    v_ready := true;
    FOR j IN coalesce(p_after_ends[i - 1], 0) + 1 .. coalesce(p_after_ends[i], 0) LOOP
      IF NOT coalesce(p_after[j] < i AND v_applied[p_after[j]], false) THEN v_ready := false; END IF;
    END LOOP;
    IF v_ready THEN
      BEGIN
        IF p_kinds[i] = 'write' THEN
          v_result := "public"."nest_session_write"(
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
            p_lock_names[i], p_max_entries[i], p_uncounted_prefixes[i]);
        ELSIF p_kinds[i] = 'remove' THEN
          v_live := NULL;
          DELETE FROM "public"."nest_session_entries" e WHERE e.namespace = p_namespaces[i] AND e.id = p_keys[i]
            RETURNING (e.expires_at IS NULL OR e.expires_at > p_nows[i]) INTO v_live;
          v_result := CASE WHEN v_live THEN 'true' ELSE 'false' END;
        ELSIF p_kinds[i] = 'flush' THEN
          v_result := "public"."nest_session_flush_by_tag"(p_namespaces[i], p_keys[i], p_nows[i])::text;
        ELSE
          v_result := 'error 22023 unknown operation ' || coalesce(p_kinds[i], 'NULL');
        END IF;
      EXCEPTION WHEN OTHERS THEN
        v_result := 'error ' || SQLSTATE || ' ' || SQLERRM;
      END;
    ELSE
      v_result := 'skipped';
    END IF;
    v_results := v_results || v_result;
    v_applied := v_applied || CASE p_kinds[i]
      WHEN 'write' THEN v_result = 'ok'
      WHEN 'remove' THEN v_result = 'true'
      WHEN 'flush' THEN v_result <> 'skipped' AND v_result NOT LIKE 'error %'
      ELSE false END;
  END LOOP;
  RETURN v_results;
END
$fn$;

-- The version-2 signature, for app instances of the release before during a rolling upgrade.
-- Such an instance sends no chains (its backends leave a chain to its frontend, which sends
-- each step once the ones before it applied) and at most one operation per namespace, in
-- namespace order: no lock is taken up front and each operation runs and answers exactly as in
-- version 3. Restarted, it refuses this database in migrate() (newer than it knows).
CREATE OR REPLACE FUNCTION "public"."nest_session_batch"(
p_kinds text[], p_namespaces text[], p_nows timestamptz[], p_keys text[],
  p_guard_fences double precision[], p_guard_values text[], p_guard_creates boolean[],
  p_guard_lifetimes boolean[], p_guard_expires timestamptz[], p_lock_names text[],
  p_max_entries integer[], p_uncounted_prefixes text[],
  p_guard_tag_ends integer[], p_guard_tags text[],
  p_must_exist_ends integer[], p_must_exist text[],
  p_set_ends integer[], p_ids text[], p_values text[], p_expires timestamptz[],
  p_tag_ends integer[], p_tag_ids text[], p_tag_tags text[],
  p_remove_ends integer[], p_removes text[]
) RETURNS text[] LANGUAGE sql AS $fn$
  SELECT "public"."nest_session_batch"(p_kinds, p_namespaces, p_nows, p_keys, p_guard_fences, p_guard_values,
    p_guard_creates, p_guard_lifetimes, p_guard_expires, p_lock_names, p_max_entries, p_uncounted_prefixes,
    p_guard_tag_ends, p_guard_tags, p_must_exist_ends, p_must_exist, p_set_ends, p_ids, p_values, p_expires,
    p_tag_ends, p_tag_ids, p_tag_tags, p_remove_ends, p_removes, NULL::integer[], NULL::integer[])
$fn$;

INSERT INTO "public"."nest_session_schema_version" (version) VALUES (4) ON CONFLICT (version) DO NOTHING;
