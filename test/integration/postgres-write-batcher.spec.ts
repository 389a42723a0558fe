import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { WriteTicket } from '../../lib/cache/write-ticket.js';
import { InvalidOptionException } from '../../lib/errors/invalid-option.exception.js';
import { StoreUnavailableException } from '../../lib/errors/store-unavailable.exception.js';
import type { PostgresPool, PostgresPoolClient, PostgresQuery, PostgresResult } from '../../lib/postgres/postgres-client.js';
import { PostgresBackend } from '../../lib/postgres/postgres.backend.js';
import { migratePostgresSchema } from '../../lib/postgres/postgres.migration.js';
import { POSTGRES_SCHEMA_VERSION } from '../../lib/postgres/postgres-schema.js';
import { PostgresWriteBatcher } from '../../lib/postgres/postgres-write.batcher.js';
import { createTestDatabase, testPool, uniqueNamespace, type TestDatabase } from '../support/postgres.js';

/**
 * Same-tick coalescing: writes, removes and flushes that backends sharing one
 * PostgresWriteBatcher issue in one tick go out as one `batch` call (one transaction), each
 * applied and answered as if alone.
 */
const SCHEMA = 'batching';

/** A pool that counts the statements sent through it, by the function they call. */
class CountingPool implements PostgresPool {
  readonly calls: string[] = [];
  constructor(private readonly inner: PostgresPool) {}
  query(query: PostgresQuery): Promise<PostgresResult> {
    this.calls.push(/"nest_session_([a-z_]+)"\(/.exec(query.text)?.[1] ?? query.text.trim().split(/\s+/, 1)[0]!);
    return this.inner.query(query);
  }
  connect(): Promise<PostgresPoolClient> {
    return this.inner.connect();
  }
  end(): Promise<void> {
    return this.inner.end();
  }
  async between(action: () => Promise<void>): Promise<string[]> {
    const start = this.calls.length;
    await action();
    return this.calls.slice(start);
  }
}

let db: TestDatabase;
let pool: CountingPool;

beforeAll(async () => {
  db = await createTestDatabase();
  await migratePostgresSchema(db.pool, { schema: SCHEMA });
  // Test-only failure injection: a write of an id starting with `boom` raises, one of `slow`
  // sleeps past the statement timeout (which no exception handler can catch), one of `pause`
  // sleeps 50 ms (holding what its transaction has locked so far).
  await db.pool.query(`
    CREATE FUNCTION ${SCHEMA}.inject_failure() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.id LIKE 'boom%' THEN RAISE EXCEPTION 'injected failure for %', NEW.id; END IF;
      IF NEW.id LIKE 'slow%' THEN PERFORM pg_sleep(2); END IF;
      IF NEW.id LIKE 'pause%' THEN PERFORM pg_sleep(0.05); END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER inject_failure BEFORE INSERT OR UPDATE ON ${SCHEMA}.nest_session_entries
      FOR EACH ROW EXECUTE FUNCTION ${SCHEMA}.inject_failure();`);
  pool = new CountingPool(testPool(db.url, { statement_timeout: 500 }));
});

afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

/** Resolves after `ms` milliseconds. */
const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Settles after the current tick's batch went out (a macrotask later). */
const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Drops every function `name` of `schema`, whatever its arguments. */
async function dropFunctions(schema: string, name: string): Promise<void> {
  const { rows } = await db.pool.query<{ signature: string }>(
    `SELECT p.oid::regprocedure::text AS signature FROM pg_proc p WHERE p.pronamespace = $1::regnamespace AND p.proname = $2`,
    [schema, name],
  );
  for (const { signature } of rows) await db.pool.query(`DROP FUNCTION ${signature}`);
}

/** Two backends (like the session stores' metadata and storage) sharing one batcher. */
function pair(): { a: PostgresBackend; b: PostgresBackend } {
  const batcher = new PostgresWriteBatcher({ pool, schema: SCHEMA });
  return {
    a: new PostgresBackend({ pool, schema: SCHEMA, namespace: uniqueNamespace('a'), batcher }),
    b: new PostgresBackend({ pool, schema: SCHEMA, namespace: uniqueNamespace('b'), batcher }),
  };
}

describe('PostgresWriteBatcher', () => {
  it('same-tick writes of two backends: one statement, both applied', async () => {
    const { a, b } = pair();
    let results: unknown[] = [];
    const calls = await pool.between(async () => {
      results = await Promise.all([
        a.write({ sets: [{ id: 'm1', data: 'meta', tags: ['all'], lifetime: 60 }] }),
        b.write({ sets: [{ id: 'g1.k', data: 'v', tags: ['g1'] }] }, { id: 'g1.~guard', fence: 1, create: true, tags: ['g1'] }),
      ]);
    });
    expect(calls).toEqual(['batch']);
    expect(results).toEqual(['ok', 'ok']);
    expect(await a.get('m1')).toBe('meta');
    expect(await a.findIdentifiersByTag('all')).toEqual(['m1']);
    expect(await b.get('g1.k')).toBe('v');
    expect(await b.get('g1.~guard')).toBe('1');
  });

  it('a refused condition in one operation leaves the other applied, each with its own answer', async () => {
    const { a, b } = pair();
    await b.write(
      { sets: [{ id: 'g2.k', data: 'old', tags: ['g2'] }] },
      { id: 'g2.~guard', fence: 5, create: true, tags: ['g2'] },
    );
    const [missing, fenced, written] = await Promise.all([
      a.write({ sets: [{ id: 'gone', data: 'x' }], mustExist: ['gone'] }),
      b.write({ sets: [{ id: 'g2.k', data: 'stale', tags: ['g2'] }] }, { id: 'g2.~guard', fence: 4 }),
      // A third operation on a namespace already in the call goes out beside it.
      a.write({ sets: [{ id: 'm2', data: 'fine' }] }),
    ]);
    expect([missing, fenced, written]).toEqual(['missing', 'fenced', 'ok']);
    expect(await a.get('gone')).toBeUndefined();
    expect(await b.get('g2.k')).toBe('old');
    expect(await a.get('m2')).toBe('fine');
  });

  it('at most one operation per namespace in one call: the rest of the tick goes out beside it', async () => {
    const { a, b } = pair();
    const calls = await pool.between(async () => {
      await Promise.all([a.set('x1', '1'), a.set('x2', '2'), b.set('y1', '1'), a.set('x3', '3')]);
    });
    expect(calls.sort()).toEqual(['batch', 'write', 'write']);
    expect(await a.getMany(['x1', 'x2', 'x3'])).toEqual(['1', '2', '3']);
    expect(await b.get('y1')).toBe('1');
  });

  it('remove and flushByTag answer in a batch what they answer alone', async () => {
    const { a, b } = pair();
    await a.set('r1', 'x');
    await b.set('f1.a', 'x', ['f1']);
    await b.set('f1.b', 'x', ['f1'], 0.001);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const calls = await pool.between(async () => {
      expect(await Promise.all([a.remove('r1'), b.flushByTag('f1')])).toEqual([true, 1]);
    });
    expect(calls).toEqual(['batch']);
    expect(await Promise.all([a.remove('r1'), b.flushByTag('f1')])).toEqual([false, 0]);
    expect(await b.findIdentifiersByTag('f1')).toEqual([]);
  });

  it('an operation that raises fails alone (StoreUnavailableException): the other is applied', async () => {
    const { a, b } = pair();
    const [failed, written] = await Promise.allSettled([
      a.write({
        sets: [
          { id: 'boom1', data: 'x' },
          { id: 'ok-too', data: 'x' },
        ],
      }),
      b.set('kept', 'yes'),
    ]);
    expect(failed.status).toBe('rejected');
    expect((failed as PromiseRejectedResult).reason).toBeInstanceOf(StoreUnavailableException);
    expect(((failed as PromiseRejectedResult).reason as Error).cause).toMatchObject({ code: 'P0001' });
    expect(written).toEqual({ status: 'fulfilled', value: undefined });
    // The failed write's other row was rolled back with it.
    expect(await a.get('ok-too')).toBeUndefined();
    expect(await b.get('kept')).toBe('yes');
  });

  it('a statement that fails as a whole (statement timeout) fails every operation and applies none', async () => {
    const { a, b } = pair();
    const results = await Promise.allSettled([a.set('slow1', 'x'), b.set('victim', 'x')]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    for (const result of results) expect((result as PromiseRejectedResult).reason).toBeInstanceOf(StoreUnavailableException);
    expect(await a.get('slow1')).toBeUndefined();
    expect(await b.get('victim')).toBeUndefined();
  });

  it('a backend refuses a batcher on another pool or schema', () => {
    const batcher = new PostgresWriteBatcher({ pool, schema: SCHEMA });
    expect(() => new PostgresBackend({ pool: db.pool, schema: SCHEMA, batcher })).toThrow(InvalidOptionException);
    expect(() => new PostgresBackend({ pool, batcher })).toThrow(InvalidOptionException);
  });
});

describe('schema version 2', () => {
  it('migrate() upgrades a version-1 schema: the batch function, an unlogged ticket sequence', async () => {
    const schema = 'upgrade';
    await migratePostgresSchema(db.pool, { schema });
    // Back to what version 1 left behind (no batch function, of either signature).
    await dropFunctions(schema, 'nest_session_batch');
    await db.pool.query(`ALTER SEQUENCE ${schema}.nest_session_lock_tickets SET LOGGED`);
    await db.pool.query(`UPDATE ${schema}.nest_session_schema_version SET version = 1`);
    expect(await migratePostgresSchema(db.pool, { schema })).toEqual({ from: 1, to: POSTGRES_SCHEMA_VERSION });
    const { rows } = await db.pool.query<{ persistence: string; batch: number }>(
      `SELECT c.relpersistence AS persistence,
              (SELECT count(*)::int FROM pg_proc p WHERE p.pronamespace = n.oid AND p.proname = 'nest_session_batch') AS batch
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = 'nest_session_lock_tickets'`,
      [schema],
    );
    // Every signature: version 5's (mustMatch, copyFrom), and version 4's (chains) and the version-2 one beside it.
    expect(rows).toEqual([{ persistence: 'u', batch: 3 }]);
    const versions = await db.pool.query(`SELECT version FROM ${schema}.nest_session_schema_version ORDER BY version`);
    expect(versions.rows).toEqual([{ version: 1 }, { version: POSTGRES_SCHEMA_VERSION }]);
    expect(await migratePostgresSchema(db.pool, { schema })).toEqual({
      from: POSTGRES_SCHEMA_VERSION,
      to: POSTGRES_SCHEMA_VERSION,
    });
  });
});

describe('schema version 3', () => {
  it('migrate() upgrades a version-2 schema: the same functions, room for HOT updates', async () => {
    const schema = 'upgrade_v3';
    await migratePostgresSchema(db.pool, { schema });
    // Back to what version 2 left behind.
    await db.pool.query(`ALTER TABLE ${schema}.nest_session_entries RESET (fillfactor)`);
    await db.pool.query(`ALTER TABLE ${schema}.nest_session_locks RESET (fillfactor)`);
    await db.pool.query(`UPDATE ${schema}.nest_session_schema_version SET version = 2`);
    expect(await migratePostgresSchema(db.pool, { schema })).toEqual({ from: 2, to: POSTGRES_SCHEMA_VERSION });
    const { rows } = await db.pool.query<{ name: string; options: string[] | null }>(
      `SELECT c.relname AS name, c.reloptions AS options FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname IN ('nest_session_entries', 'nest_session_locks') ORDER BY c.relname`,
      [schema],
    );
    expect(rows).toEqual([
      { name: 'nest_session_entries', options: ['fillfactor=80'] },
      { name: 'nest_session_locks', options: ['fillfactor=70'] },
    ]);
    expect(await migratePostgresSchema(db.pool, { schema })).toEqual({
      from: POSTGRES_SCHEMA_VERSION,
      to: POSTGRES_SCHEMA_VERSION,
    });
  });

  it('a capped guarded write reads O(group) buffers with thousands of groups beside it, on a connection that planned it while the tables were empty', async () => {
    const schema = 'count_plan';
    await migratePostgresSchema(db.pool, { schema });
    const single = testPool(db.url, { max: 1 });
    try {
      const backend = new PostgresBackend({ pool: single, schema, namespace: 'ns' });
      const guard = (group: string, fence: number, create = false) => ({
        id: `${group}.~guard`,
        fence,
        create,
        tags: [group],
        maxEntries: 10,
      });
      // Planned now, with nothing in the tables.
      expect(await backend.write({ sets: [{ id: 'g0.k', data: 'v', tags: ['g0'] }] }, guard('g0', 1, true))).toBe('ok');
      // Thousands of other groups, with tags, in the same namespace.
      await single.query({
        text: `WITH e AS (INSERT INTO ${schema}.nest_session_entries (namespace, id, value)
                 SELECT 'ns', 'o' || i || '.k', 'v' FROM generate_series(1, 5000) i RETURNING id)
               INSERT INTO ${schema}.nest_session_tags (namespace, tag, id) SELECT 'ns', split_part(id, '.', 1), id FROM e`,
      });
      await single.query({ text: `ANALYZE ${schema}.nest_session_entries` });
      await single.query({ text: `ANALYZE ${schema}.nest_session_tags` });
      const read = async () => {
        const { rows } = await single.query({
          text: `SELECT sum(heap_blks_hit + heap_blks_read + coalesce(idx_blks_hit, 0) + coalesce(idx_blks_read, 0))::int AS n
                   FROM pg_statio_user_tables WHERE schemaname = $1`,
          values: [schema],
        });
        return (rows[0] as { n: number }).n;
      };
      // Statistics are sent at the end of a transaction; pg_stat_force_next_flush() (PostgreSQL 15+) sends them now.
      const flushStats = () => single.query({ text: `SELECT pg_stat_force_next_flush()` }).catch(() => undefined);
      await flushStats();
      const before = await read();
      for (let i = 0; i < 10; i++) {
        // A newer fence each time (a commit under a new lock): the guard is updated.
        expect(await backend.write({ sets: [{ id: 'g0.k', data: `v${i}`, tags: ['g0'] }] }, guard('g0', i + 2))).toBe('ok');
      }
      await flushStats();
      // A scan of the namespace would read dozens of pages per write; O(group) reads a few dozen
      // for the whole loop (about 25 per write, the statistics queries included).
      expect((await read()) - before).toBeLessThan(10 * 40);
    } finally {
      await single.end();
    }
  });
});

/**
 * What a session's login sends (SessionStore's storage move), on two backends sharing a
 * batcher: the old storage's guard checked with the lock's fence, the data written to a fresh
 * storage, the old id's metadata removed (it must exist), the new metadata written, the old
 * storage flushed; each step only if the ones it requires applied.
 */
function login(
  meta: PostgresBackend,
  storage: PostgresBackend,
  ids: { from: string; to: string; oldKey: string; newKey: string; fence: number },
): { steps: Promise<unknown>[]; tickets: WriteTicket[] } {
  const checked = new WriteTicket();
  const stored = new WriteTicket();
  const retired = new WriteTicket();
  const steps = [
    storage.write({}, { id: `${ids.from}.~guard`, fence: ids.fence }, { ticket: checked }),
    storage.write(
      { sets: [{ id: `${ids.to}.cart`, data: 'copied', tags: [ids.to] }] },
      { id: `${ids.to}.~guard`, fence: 0, create: true, tags: [ids.to], lifetime: 60 },
      { after: [checked], ticket: stored },
    ),
    meta.remove(ids.oldKey, { after: [checked, stored], ticket: retired }),
    meta.write({ sets: [{ id: ids.newKey, data: 'bound', tags: ['all'], lifetime: 60 }] }, undefined, {
      after: [retired, stored],
    }),
    storage.flushByTag(ids.from, { after: [retired] }),
  ];
  return { steps, tickets: [checked, stored, retired] };
}

/** A stored session: metadata `key` (tagged `all`), storage `group` with one entry under a guard at `fence`. */
async function storedSession(
  meta: PostgresBackend,
  storage: PostgresBackend,
  key: string,
  group: string,
  fence = 5,
): Promise<void> {
  expect(
    await Promise.all([
      meta.write({ sets: [{ id: key, data: 'anonymous', tags: ['all'], lifetime: 60 }] }),
      storage.write(
        { sets: [{ id: `${group}.cart`, data: 'old', tags: [group] }] },
        { id: `${group}.~guard`, fence, create: true, tags: [group], lifetime: 60 },
      ),
    ]),
  ).toEqual(['ok', 'ok']);
}

describe('chains (schema version 4): dependent writes issued in one tick are one batch call', () => {
  it('backends with a batcher advertise ordersWrites; without one they leave chains to the frontend', () => {
    const { a } = pair();
    expect(a.ordersWrites).toBe(true);
    expect(new PostgresBackend({ pool, schema: SCHEMA }).ordersWrites).toBe(false);
  });

  it("a login's chain (guard check, new storage, old id removed, new metadata, old storage flushed): one statement, every step applied", async () => {
    const { a: meta, b: storage } = pair();
    await storedSession(meta, storage, 'old-id', 'from1');
    let results: unknown[] = [];
    let tickets: WriteTicket[] = [];
    const calls = await pool.between(async () => {
      const chain = login(meta, storage, { from: 'from1', to: 'to1', oldKey: 'old-id', newKey: 'new-id', fence: 5 });
      tickets = chain.tickets;
      results = await Promise.all(chain.steps);
    });
    expect(calls).toEqual(['batch']);
    // The flush counts the old storage's live rows: its entry and its guard.
    expect(results).toEqual(['ok', 'ok', true, 'ok', 2]);
    expect(await Promise.all(tickets.map((ticket) => ticket.applied))).toEqual([true, true, true]);
    expect(await meta.get('old-id')).toBeUndefined();
    expect(await meta.get('new-id')).toBe('bound');
    expect(await meta.findIdentifiersByTag('all')).toEqual(['new-id']);
    expect(await storage.getMany(['to1.cart', 'to1.~guard', 'from1.cart', 'from1.~guard'])).toEqual([
      'copied',
      '0',
      undefined,
      undefined,
    ]);
  });

  it('a fenced guard check inside the chain: every step after it writes nothing and answers skipped', async () => {
    const { a: meta, b: storage } = pair();
    await storedSession(meta, storage, 'old-id', 'from2', 5);
    let results: unknown[] = [];
    let tickets: WriteTicket[] = [];
    const calls = await pool.between(async () => {
      // A holder whose lock expired (fence 4) after a newer one wrote with 5.
      const chain = login(meta, storage, { from: 'from2', to: 'to2', oldKey: 'old-id', newKey: 'new-id', fence: 4 });
      tickets = chain.tickets;
      results = await Promise.all(chain.steps);
    });
    expect(calls).toEqual(['batch']);
    expect(results).toEqual(['fenced', 'skipped', false, 'skipped', 0]);
    expect(await Promise.all(tickets.map((ticket) => ticket.applied))).toEqual([false, false, false]);
    // Nothing of the chain was written: the old session is intact, the new ids do not exist.
    expect(await meta.getMany(['old-id', 'new-id'])).toEqual(['anonymous', undefined]);
    expect(await meta.findIdentifiersByTag('all')).toEqual(['old-id']);
    expect(await storage.getMany(['from2.cart', 'from2.~guard', 'to2.cart', 'to2.~guard'])).toEqual([
      'old',
      '5',
      undefined,
      undefined,
    ]);
  });

  it('the old id already removed (a concurrent logout): the new metadata and the flush are skipped', async () => {
    const { a: meta, b: storage } = pair();
    await storedSession(meta, storage, 'old-id', 'from3');
    expect(await meta.remove('old-id')).toBe(true);
    let results: unknown[] = [];
    const calls = await pool.between(async () => {
      results = await Promise.all(
        login(meta, storage, { from: 'from3', to: 'to3', oldKey: 'old-id', newKey: 'new-id', fence: 5 }).steps,
      );
    });
    expect(calls).toEqual(['batch']);
    // The steps before the removal applied (the fresh storage is unreachable and expires with its guard).
    expect(results).toEqual(['ok', 'ok', false, 'skipped', 0]);
    expect(await meta.get('new-id')).toBeUndefined();
    expect(await meta.findIdentifiersByTag('all')).toEqual([]);
    expect(await storage.getMany(['from3.cart', 'from3.~guard'])).toEqual(['old', '5']);
  });

  it('a step that raises: only it is rolled back, what requires it is skipped, the other steps apply', async () => {
    const { a: meta, b: storage } = pair();
    await storedSession(meta, storage, 'old-id', 'from4');
    const first = new WriteTicket();
    const raised = new WriteTicket();
    let results: PromiseSettledResult<unknown>[] = [];
    const calls = await pool.between(async () => {
      results = await Promise.allSettled([
        meta.write({ sets: [{ id: 'm-first', data: 'x' }] }, undefined, { ticket: first }),
        // The injected failure: a row id starting with `boom`.
        storage.write(
          { sets: [{ id: 'boom4.cart', data: 'x', tags: ['boom4'] }] },
          { id: 'boom4.~guard', fence: 0, create: true, tags: ['boom4'] },
          { after: [first], ticket: raised },
        ),
        meta.write({ sets: [{ id: 'm-after-raised', data: 'x' }] }, undefined, { after: [raised] }),
        storage.flushByTag('from4', { after: [first] }),
      ]);
    });
    expect(calls).toEqual(['batch']);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    const error = (results[1] as PromiseRejectedResult).reason as Error;
    expect(error).toBeInstanceOf(StoreUnavailableException);
    expect(error.cause).toMatchObject({ code: 'P0001' });
    expect([
      (results[0] as PromiseFulfilledResult<unknown>).value,
      (results[2] as PromiseFulfilledResult<unknown>).value,
    ]).toEqual(['ok', 'skipped']);
    expect((results[3] as PromiseFulfilledResult<unknown>).value).toBe(2);
    expect(await raised.applied).toBe(false);
    expect(await meta.getMany(['m-first', 'm-after-raised'])).toEqual(['x', undefined]);
    // The raising write's guard, created in the same operation, was rolled back with it.
    expect(await storage.getMany(['boom4.cart', 'boom4.~guard', 'from4.cart'])).toEqual([undefined, undefined, undefined]);
  });

  it('a chain whose statement fails as a whole (statement timeout): every step fails, none applied', async () => {
    const { a: meta, b: storage } = pair();
    const first = new WriteTicket();
    const second = new WriteTicket();
    const results = await Promise.allSettled([
      meta.write({ sets: [{ id: 'm-before-slow', data: 'x' }] }, undefined, { ticket: first }),
      // Sleeps past the statement timeout, which no exception block catches.
      storage.write({ sets: [{ id: 'slow5.cart', data: 'x' }] }, undefined, { after: [first], ticket: second }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    for (const result of results) expect((result as PromiseRejectedResult).reason).toBeInstanceOf(StoreUnavailableException);
    expect(await Promise.all([first.applied, second.applied])).toEqual([false, false]);
    expect(await meta.get('m-before-slow')).toBeUndefined();
    expect(await storage.get('slow5.cart')).toBeUndefined();
  });

  it('a chain spread across ticks: the later step waits for the earlier one, and is skipped if it did not apply', async () => {
    const { a: meta } = pair();
    await meta.set('spread-old', 'x');
    const removed = new WriteTicket();
    const calls = await pool.between(async () => {
      const removal = meta.remove('spread-old', { ticket: removed });
      await nextTick();
      const write = meta.write({ sets: [{ id: 'spread-new', data: 'y' }] }, undefined, { after: [removed] });
      expect(await Promise.all([removal, write])).toEqual([true, 'ok']);
    });
    expect(calls).toEqual(['DELETE', 'write']);
    expect(await meta.get('spread-new')).toBe('y');

    const gone = new WriteTicket();
    const skipped = await pool.between(async () => {
      const removal = meta.remove('spread-old', { ticket: gone });
      await nextTick();
      const write = meta.write({ sets: [{ id: 'spread-never', data: 'y' }] }, undefined, { after: [gone] });
      const flush = meta.flushByTag('any', { after: [gone] });
      expect(await Promise.all([removal, write, flush])).toEqual([false, 'skipped', 0]);
    });
    // Nothing is sent for the skipped steps.
    expect(skipped).toEqual(['DELETE']);
    expect(await meta.get('spread-never')).toBeUndefined();
  });

  it('a prerequisite of another backend (no shared batcher) is waited for, as the frontend would', async () => {
    const { a: meta } = pair();
    const other = new PostgresBackend({ pool, schema: SCHEMA, namespace: uniqueNamespace('other') });
    const written = new WriteTicket();
    const [first, second] = await Promise.all([
      other.write({ sets: [{ id: 'o1', data: 'x' }] }, undefined, { ticket: written }),
      meta.write({ sets: [{ id: 'after-other', data: 'y' }] }, undefined, { after: [written] }),
    ]);
    expect([first, second]).toEqual(['ok', 'ok']);
    expect(await meta.get('after-other')).toBe('y');
  });

  it('chains racing destroys of the same sessions (metadata, then storage, as a destroy locks them) never deadlock', async () => {
    // Two instances of the app on the same tables, each with its own pool, large enough that
    // every login and the destroy of the same session reach PostgreSQL at the same moment.
    const instance = () => {
      const own = testPool(db.url, { max: SESSIONS, statement_timeout: 10_000 });
      const batcher = new PostgresWriteBatcher({ pool: own, schema: SCHEMA });
      return {
        own,
        meta: new PostgresBackend({ pool: own, schema: SCHEMA, namespace: 'race:m', batcher }),
        storage: new PostgresBackend({ pool: own, schema: SCHEMA, namespace: 'race:s', batcher }),
      };
    };
    const first = instance();
    const second = instance();
    const seen = new Set<string>();
    try {
      // Every connection of both pools opened, its statements prepared: neither side starts late.
      await Promise.all(
        Array.from({ length: SESSIONS }, async (_, i) => {
          const ids = { from: `warm${i}`, to: `warmed${i}`, oldKey: `warm-old${i}`, newKey: `warm-new${i}`, fence: 5 };
          await Promise.all([
            Promise.all(login(first.meta, first.storage, ids).steps),
            Promise.all([second.meta.remove(ids.oldKey), second.storage.flushByTag(ids.from)]),
          ]);
        }),
      );
      for (let round = 0; round < 3; round++) {
        const sessions = Array.from({ length: SESSIONS }, (_, i) => `${round}-${i}`);
        await Promise.all(sessions.map((s) => storedSession(first.meta, first.storage, `race-old${s}`, `race${s}`)));
        const outcomes = await Promise.all(
          sessions.map(async (s, i) => {
            // The new storage's write pauses 50 ms: the chain then holds the old storage's
            // group (its guard check came first) while the destroy, which sends the metadata
            // removal and the storage flush in one tick (one call, metadata first), takes the
            // old id's row; a chain taking its locks step by step would now wait for that row
            // while the destroy waits for the group: a deadlock.
            const ids = { from: `race${s}`, to: `pause${s}`, oldKey: `race-old${s}`, newKey: `race-new${s}`, fence: 5 };
            const destroy = () => Promise.all([second.meta.remove(`race-old${s}`), second.storage.flushByTag(`race${s}`)]);
            const chain = () => Promise.all(login(first.meta, first.storage, ids).steps);
            // Every other pair starts with the destroy, a millisecond ahead.
            const [logged, destroyed] =
              i % 2 === 0
                ? await Promise.all([chain(), delay(1).then(destroy)])
                : await Promise.all([delay(1).then(chain), destroy()]).then(([c, d]) => [c, d] as const);
            return { logged, destroyed };
          }),
        );
        for (const { logged, destroyed } of outcomes) {
          // One of them went first, whole: the login (the destroy then finds nothing), or the
          // destroy (the login's guard check then finds the session gone, and nothing is written).
          if (logged[0] === 'ok') {
            expect(logged).toEqual(['ok', 'ok', true, 'ok', 2]);
            expect(destroyed).toEqual([false, 0]);
          } else {
            expect(logged).toEqual(['missing', 'skipped', false, 'skipped', 0]);
            expect(destroyed).toEqual([true, 2]);
          }
          seen.add(String(logged[0]));
        }
      }
      // Both orders happened: the test raced what it means to.
      expect([...seen].sort()).toEqual(['missing', 'ok']);
    } finally {
      await Promise.all([first.own.end(), second.own.end()]);
    }
  });
});

/** Sessions per round of the race test (one connection each, per instance). */
const SESSIONS = 16;

describe('schema version 4', () => {
  it('migrate() upgrades a version-3 schema: batch takes chains, the version-2 signature stays', async () => {
    const schema = 'upgrade_v4';
    await migratePostgresSchema(db.pool, { schema });
    // Back to what version 3 left behind: the 25-argument batch alone (a plpgsql function).
    await dropFunctions(schema, 'nest_session_batch');
    const v3 = `${schema}.nest_session_batch(${V3_BATCH_TYPES.join(', ')})`;
    await db.pool.query(`CREATE FUNCTION ${v3} RETURNS text[] LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$`);
    await db.pool.query(`UPDATE ${schema}.nest_session_schema_version SET version = 3`);
    expect(await migratePostgresSchema(db.pool, { schema })).toEqual({ from: 3, to: POSTGRES_SCHEMA_VERSION });
    const { rows } = await db.pool.query<{ args: number; language: string }>(
      `SELECT p.pronargs AS args, l.lanname AS language FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
        WHERE p.pronamespace = $1::regnamespace AND p.proname = 'nest_session_batch' ORDER BY p.pronargs`,
      [schema],
    );
    expect(rows).toEqual([
      { args: 25, language: 'sql' },
      { args: 27, language: 'sql' },
      { args: 31, language: 'plpgsql' },
    ]);
    // A chain on the upgraded schema.
    const batcher = new PostgresWriteBatcher({ pool, schema });
    const meta = new PostgresBackend({ pool, schema, namespace: 'm', batcher });
    const storage = new PostgresBackend({ pool, schema, namespace: 's', batcher });
    await storedSession(meta, storage, 'old', 'g');
    expect(await Promise.all(login(meta, storage, { from: 'g', to: 'h', oldKey: 'old', newKey: 'new', fence: 5 }).steps)).toEqual(
      ['ok', 'ok', true, 'ok', 2],
    );
    expect(await migratePostgresSchema(db.pool, { schema })).toEqual({
      from: POSTGRES_SCHEMA_VERSION,
      to: POSTGRES_SCHEMA_VERSION,
    });
  });

  it('an instance of the release before (the version-2 signature) is answered as by version 3', async () => {
    const { a: meta, b: storage } = pair();
    await storedSession(meta, storage, 'v3-old', 'v3g');
    const now = new Date().toISOString();
    const later = new Date(Date.now() + 60_000).toISOString();
    // What a version-3 batcher sends for a renewal's second tick: one operation per namespace,
    // in namespace order (the old id removed, a guarded write of the storage).
    const values: unknown[] = [
      ['remove', 'write'], [meta.namespace, storage.namespace], [now, now], ['v3-old', 'v3g.~guard'],
      [null, 6], [null, '6'], [false, false], [false, true], [null, later], [null, null],
      [null, null], [null, null],
      [0, 0], [],
      [0, 0], [],
      [0, 1], ['v3g.cart'], ['renewed'], [null],
      [0, 1], ['v3g.cart'], ['v3g'],
      [0, 0], [],
    ]; // prettier-ignore
    const params = V3_BATCH_TYPES.map((type, i) => `$${i + 1}::${type}`).join(', ');
    const { rows } = await db.pool.query<{ results: string[] }>(
      `SELECT ${SCHEMA}.nest_session_batch(${params}) AS results`,
      values,
    );
    expect(rows[0]!.results).toEqual(['true', 'ok']);
    expect(await meta.get('v3-old')).toBeUndefined();
    expect(await storage.getMany(['v3g.cart', 'v3g.~guard'])).toEqual(['renewed', '6']);
  });
});

/** The argument types of the version-2/3 `batch` signature. */
const V3_BATCH_TYPES = [
  'text[]', 'text[]', 'timestamptz[]', 'text[]',
  'double precision[]', 'text[]', 'boolean[]',
  'boolean[]', 'timestamptz[]', 'text[]',
  'integer[]', 'text[]',
  'integer[]', 'text[]',
  'integer[]', 'text[]',
  'integer[]', 'text[]', 'text[]', 'timestamptz[]',
  'integer[]', 'text[]', 'text[]',
  'integer[]', 'text[]',
]; // prettier-ignore
