import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
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
  // sleeps past the statement timeout (which no exception handler can catch).
  await db.pool.query(`
    CREATE FUNCTION ${SCHEMA}.inject_failure() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.id LIKE 'boom%' THEN RAISE EXCEPTION 'injected failure for %', NEW.id; END IF;
      IF NEW.id LIKE 'slow%' THEN PERFORM pg_sleep(2); END IF;
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
    // Back to what version 1 left behind.
    await db.pool.query(`DROP FUNCTION ${schema}.nest_session_batch`);
    await db.pool.query(`ALTER SEQUENCE ${schema}.nest_session_lock_tickets SET LOGGED`);
    await db.pool.query(`UPDATE ${schema}.nest_session_schema_version SET version = 1`);
    expect(await migratePostgresSchema(db.pool, { schema })).toEqual({ from: 1, to: POSTGRES_SCHEMA_VERSION });
    const { rows } = await db.pool.query<{ persistence: string; batch: string | null }>(
      `SELECT c.relpersistence AS persistence, to_regproc('${schema}.nest_session_batch')::text AS batch
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = 'nest_session_lock_tickets'`,
      [schema],
    );
    expect(rows).toEqual([{ persistence: 'u', batch: `${schema}.nest_session_batch` }]);
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
