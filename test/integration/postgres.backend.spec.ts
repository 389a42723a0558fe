import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { InvalidArgumentException } from '../../lib/errors/invalid-argument.exception.js';
import { InvalidOptionException } from '../../lib/errors/invalid-option.exception.js';
import { StoreUnavailableException } from '../../lib/errors/store-unavailable.exception.js';
import { PostgresBackend } from '../../lib/postgres/postgres.backend.js';
import { migratePostgresSchema } from '../../lib/postgres/postgres.migration.js';
import { POSTGRES_SCHEMA_SQL, POSTGRES_SCHEMA_VERSION, postgresSchemaSql } from '../../lib/postgres/postgres-schema.js';
import { backendContract } from '../contract/backend.contract.js';
import { createTestDatabase, testPool, uniqueNamespace, type TestDatabase } from '../support/postgres.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  await migratePostgresSchema(db.pool);
});

afterAll(async () => {
  await db?.drop();
});

function makeBackend(name: string, options: { preparedStatements?: boolean } = {}): PostgresBackend {
  return new PostgresBackend({ pool: db.pool, namespace: uniqueNamespace(name), ...options });
}

// Expiry is checked against this process's clock: the suite can move a fake Date ...
backendContract('postgres', async () => {
  const backend = makeBackend('contract');
  return { backend, cleanup: () => backend.flush() };
});

// ... and real time must give the same answers (unprepared statements, as behind PgBouncer).
backendContract(
  'postgres (real time, unprepared statements)',
  async () => {
    const backend = makeBackend('contract-rt', { preparedStatements: false });
    return { backend, cleanup: () => backend.flush() };
  },
  { realTime: true },
);

describe('PostgresBackend', () => {
  /** Rows of this backend's namespace in a table. */
  async function count(table: 'entries' | 'tags', namespace: string): Promise<number> {
    const { rows } = await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM nest_session_${table} WHERE namespace = $1`, [
      namespace,
    ]);
    return Number(rows[0]!.n);
  }

  describe('options', () => {
    it('rejects a missing pool, a bad namespace, schema or table prefix', () => {
      expect(() => new PostgresBackend({ pool: undefined as never })).toThrow(InvalidOptionException);
      expect(() => new PostgresBackend({ pool: db.pool, namespace: 'a b' })).toThrow(InvalidOptionException);
      expect(() => new PostgresBackend({ pool: db.pool, schema: 'x"; DROP TABLE y; --' })).toThrow(InvalidOptionException);
      expect(() => new PostgresBackend({ pool: db.pool, tablePrefix: 'Upper' })).toThrow(InvalidOptionException);
      expect(() => new PostgresBackend({ pool: db.pool, tablePrefix: 'x'.repeat(41) })).toThrow(InvalidOptionException);
    });

    it('rejects bad input before touching PostgreSQL', async () => {
      const backend = makeBackend('input');
      await expect(backend.set('bad id', 'x')).rejects.toBeInstanceOf(InvalidArgumentException);
      await expect(backend.set('ok', 'x', ['bad tag'])).rejects.toBeInstanceOf(InvalidArgumentException);
      await expect(backend.set('ok', 'x', [], -1)).rejects.toBeInstanceOf(InvalidArgumentException);
      await expect(backend.write({}, { id: 'g', fence: Number.NaN })).rejects.toBeInstanceOf(InvalidArgumentException);
      await expect(backend.findIdentifiersByTagPage('t', 'not a cursor', 10)).rejects.toBeInstanceOf(InvalidArgumentException);
      expect(await backend.get('ok')).toBeUndefined();
    });
  });

  describe('schema', () => {
    it('migrate() is idempotent and records the version', async () => {
      expect(await migratePostgresSchema(db.pool)).toEqual({ from: POSTGRES_SCHEMA_VERSION, to: POSTGRES_SCHEMA_VERSION });
      const { rows } = await db.pool.query<{ version: number }>('SELECT version FROM nest_session_schema_version');
      expect(rows).toEqual([{ version: POSTGRES_SCHEMA_VERSION }]);
    });

    it('concurrent migrations of a fresh schema wait for each other', async () => {
      const results = await Promise.all(
        Array.from({ length: 4 }, () => migratePostgresSchema(db.pool, { schema: 'concurrent', tablePrefix: 'c_' })),
      );
      expect(results.map((r) => r.from).sort()).toEqual([
        0,
        POSTGRES_SCHEMA_VERSION,
        POSTGRES_SCHEMA_VERSION,
        POSTGRES_SCHEMA_VERSION,
      ]);
      const backend = new PostgresBackend({ pool: db.pool, schema: 'concurrent', tablePrefix: 'c_' });
      await backend.set('x', 'y');
      expect(await backend.get('x')).toBe('y');
    });

    it('the exported SQL is what migrate() runs, for any schema and prefix, and applies by itself', async () => {
      expect(POSTGRES_SCHEMA_SQL).toBe(postgresSchemaSql({ schema: 'public', tablePrefix: 'nest_session_' }));
      const sql = postgresSchemaSql({ schema: 'own_migrations', tablePrefix: 'app_' });
      expect(sql).toContain('"own_migrations"."app_entries"');
      expect(sql).not.toContain('nest_session_');
      await db.pool.query(sql);
      await db.pool.query(sql); // twice: idempotent
      const backend = new PostgresBackend({ pool: db.pool, schema: 'own_migrations', tablePrefix: 'app_' });
      expect(await backend.write({ sets: [{ id: 'a.b', data: 'c', tags: ['a'] }] }, { id: 'a.g', fence: 1, create: true })).toBe(
        'ok',
      );
      expect(await backend.findIdentifiersByTag('a')).toEqual(['a.b']);
    });

    it('refuses a database whose schema is newer than this release', async () => {
      await migratePostgresSchema(db.pool, { schema: 'future' });
      await db.pool.query('INSERT INTO future.nest_session_schema_version (version) VALUES (99)');
      await expect(migratePostgresSchema(db.pool, { schema: 'future' })).rejects.toThrow(/version 99, newer/);
    });
  });

  describe('what is stored', () => {
    it('keeps values, memberships and expiry in rows; remove and flushByTag take the memberships along', async () => {
      const backend = makeBackend('rows');
      await backend.write({
        sets: [
          { id: 'grp.a', data: 'A', tags: ['grp', 'other'], lifetime: 60 },
          { id: 'grp.b', data: 'B', tags: ['grp'] },
        ],
      });
      const { rows } = await db.pool.query<{ id: string; value: string; expires: boolean }>(
        'SELECT id, value, expires_at IS NOT NULL AS expires FROM nest_session_entries WHERE namespace = $1 ORDER BY id',
        [backend.namespace],
      );
      expect(rows).toEqual([
        { id: 'grp.a', value: 'A', expires: true },
        { id: 'grp.b', value: 'B', expires: false },
      ]);
      expect(await count('tags', backend.namespace)).toBe(3);
      await backend.remove('grp.a');
      expect(await count('tags', backend.namespace)).toBe(1);
      expect(await backend.flushByTag('grp')).toBe(1);
      expect(await count('entries', backend.namespace)).toBe(0);
      expect(await count('tags', backend.namespace)).toBe(0);
    });

    it('namespaces keep backends on one table apart', async () => {
      const one = makeBackend('one');
      const two = makeBackend('two');
      await one.set('same.id', 'one', ['t']);
      await two.set('same.id', 'two', ['t']);
      expect(await one.get('same.id')).toBe('one');
      expect(await two.findIdentifiersByTag('t')).toEqual(['same.id']);
      await one.flush();
      expect(await two.get('same.id')).toBe('two');
    });

    it('stores the fence of a guard beside its value, comparing numbers, not text', async () => {
      const backend = makeBackend('fence');
      const big = 1_764_000_000_000_000; // a fence from a clock in microseconds
      expect(await backend.write({}, { id: 'g.~guard', fence: big, create: true, tags: ['g'] })).toBe('ok');
      expect(await backend.get('g.~guard')).toBe(String(big));
      expect(await backend.write({}, { id: 'g.~guard', fence: 9 })).toBe('fenced');
      expect(await backend.write({}, { id: 'g.~guard', fence: big + 1 })).toBe('ok');
      expect(await backend.get('g.~guard')).toBe(String(big + 1));
    });
  });

  describe('concurrency', () => {
    it('guarded writes of one group are serialised: the highest fence wins, nothing is lost', async () => {
      const backend = makeBackend('race');
      await backend.write({}, { id: 'r.~guard', fence: 1, create: true, tags: ['r'] });
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          backend.write({ sets: [{ id: `r.k${i}`, data: String(i), tags: ['r'] }] }, { id: 'r.~guard', fence: 1 + (i % 3) }),
        ),
      );
      expect(results.every((r) => r === 'ok' || r === 'fenced')).toBe(true);
      const written = results.flatMap((r, i) => (r === 'ok' ? [`r.k${i}`] : []));
      expect((await backend.findIdentifiersByTag('r')).filter((id) => id !== 'r.~guard').sort()).toEqual(written.sort());
      expect(await backend.get('r.~guard')).toBe('3');
    });

    it('a destroy (flushByTag) racing commits of the same session leaves nothing behind', async () => {
      const backend = makeBackend('destroy');
      for (let round = 0; round < 10; round++) {
        const group = `d${round}`;
        await backend.write({}, { id: `${group}.~guard`, fence: 1, create: true, tags: [group] });
        const commits = Array.from({ length: 8 }, (_, i) =>
          backend.write({ sets: [{ id: `${group}.k${i}`, data: 'x', tags: [group] }] }, { id: `${group}.~guard`, fence: 1 }),
        );
        const flushed = backend.flushByTag(group);
        await Promise.all([...commits, flushed]);
        // Every commit either went before the destroy (and was flushed) or found the guard gone.
        expect(await backend.findIdentifiersByTag(group)).toEqual([]);
      }
      expect(await count('entries', backend.namespace)).toBe(0);
    });

    it('concurrent collectors share the expired entries: each is answered once', async () => {
      const backend = makeBackend('gc');
      await backend.write({
        sets: Array.from({ length: 2500 }, (_, i) => ({ id: `gc${i}.m`, data: String(i), lifetime: 0.001 })),
      });
      await new Promise((resolve) => setTimeout(resolve, 20));
      const runs = await Promise.all([backend.collectGarbage(), backend.collectGarbage(), backend.collectGarbage()]);
      const all = runs.flat().map((e) => e.id);
      expect(all.length).toBe(2500);
      expect(new Set(all).size).toBe(2500);
    });
  });

  describe('failures', () => {
    it('an unreachable server is StoreUnavailableException, with a generic public message', async () => {
      const pool = testPool('postgres://postgres@127.0.0.1:1/none', { connectionTimeoutMillis: 500 });
      try {
        const backend = new PostgresBackend({ pool });
        const error = await backend.get('x').catch((e: unknown) => e);
        expect(error).toBeInstanceOf(StoreUnavailableException);
        expect((error as StoreUnavailableException).message).toContain('postgres get');
        expect((error as StoreUnavailableException).publicMessage).toBe('The session store is unavailable; retry later.');
      } finally {
        await pool.end();
      }
    });

    it('a statement timeout is StoreUnavailableException and leaves nothing half-written', async () => {
      const backend = makeBackend('timeout');
      await backend.write({}, { id: 't.~guard', fence: 1, create: true, tags: ['t'] });
      const pool = testPool(db.url, { statement_timeout: 200 });
      const blocker = await db.pool.connect();
      try {
        // Another transaction holds the guard's row: the write waits, then times out.
        await blocker.query('BEGIN');
        await blocker.query('SELECT 1 FROM nest_session_entries WHERE namespace = $1 AND id = $2 FOR UPDATE', [
          backend.namespace,
          't.~guard',
        ]);
        const slow = new PostgresBackend({ pool, namespace: backend.namespace });
        const error = await slow
          .write({ sets: [{ id: 't.a', data: 'A', tags: ['t'] }], removes: ['t.x'] }, { id: 't.~guard', fence: 5 })
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(StoreUnavailableException);
        expect((error as Error).message).toMatch(/statement timeout/);
      } finally {
        await blocker.query('ROLLBACK');
        blocker.release();
        await pool.end();
      }
      expect(await backend.get('t.a')).toBeUndefined();
      expect(await backend.get('t.~guard')).toBe('1');
    });
  });
});
