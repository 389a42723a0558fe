import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { WriteTicket } from '../../lib/cache/write-ticket.js';
import { PostgresBackend } from '../../lib/postgres/postgres.backend.js';
import { migratePostgresSchema } from '../../lib/postgres/postgres.migration.js';
import { PostgresWriteBatcher } from '../../lib/postgres/postgres-write.batcher.js';
import { entries, guardOf, movesGroupsContract } from '../contract/moves-groups.contract.js';
import { createTestDatabase, testPool, uniqueNamespace, type TestDatabase } from '../support/postgres.js';
import type pg from 'pg';

/**
 * PostgreSQL's `movesGroups`: `WriteBatch.mustMatch` and `WriteGuard.copyFrom` in the schema's
 * `write` function, alone and inside a chain's one `batch` statement.
 */
const SCHEMA = 'moves';

let db: TestDatabase;
let pool: pg.Pool;
/** Statements sent, by the function they call (or their first word). */
const calls: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  await migratePostgresSchema(db.pool, { schema: SCHEMA });
  pool = testPool(db.url, { statement_timeout: 5000 });
  const query = pool.query.bind(pool) as (query: string | { text: string }, values?: unknown[]) => Promise<unknown>;
  // Counts statements without changing what they do (the real pool underneath).
  (pool as unknown as { query: typeof query }).query = (q, values) => {
    const text = typeof q === 'string' ? q : q.text;
    calls.push(/"nest_session_([a-z_]+)"\(/.exec(text)?.[1] ?? text.trim().split(/\s+/, 1)[0]!);
    return query(q, values);
  };
});

afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

/** A backend with a batcher of its own (or the one given), in a fresh namespace. */
function backend(
  batcher: PostgresWriteBatcher = new PostgresWriteBatcher({ pool, schema: SCHEMA }),
  namespace: string = uniqueNamespace('mv'),
): PostgresBackend {
  return new PostgresBackend({ pool, schema: SCHEMA, namespace, batcher });
}

movesGroupsContract('postgres', async () => backend());

describe('PostgresBackend movesGroups', () => {
  it('is declared only with a batcher (a chain must be one statement)', () => {
    expect(new PostgresBackend({ pool, schema: SCHEMA }).movesGroups).toBe(false);
    expect(backend().movesGroups).toBe(true);
  });

  it('honours mustMatch and copyFrom without a batcher too (one write function call)', async () => {
    const alone = new PostgresBackend({ pool, schema: SCHEMA, namespace: uniqueNamespace('alone') });
    await alone.set('m', 'one');
    expect(await alone.write({ mustMatch: [{ id: 'm', data: 'two' }], sets: [{ id: 'x', data: 'X' }] })).toBe('changed');
    expect(await alone.get('x')).toBeUndefined();
    expect(await alone.write({ sets: entries('a', { k: 'K' }) }, guardOf('a'))).toBe('ok');
    expect(await alone.write({}, guardOf('b', { copyFrom: 'a' }))).toBe('ok');
    expect(await alone.get('b.k')).toBe('K');
  });

  it('a login chain in one tick is one batch statement: a changed metadata entry skips the rest', async () => {
    const batcher = new PostgresWriteBatcher({ pool, schema: SCHEMA });
    const meta = backend(batcher);
    const storage = backend(batcher);
    await meta.set('old', 'resumed');
    expect(await storage.write({ sets: entries('g', { a: 'A' }) }, guardOf('g'))).toBe('ok');
    const move = (expected: string) => {
      const matched = new WriteTicket();
      const stored = new WriteTicket();
      return [
        meta.write({ mustMatch: [{ id: 'old', data: expected }] }, undefined, { ticket: matched }),
        storage.write({ sets: entries('h', { b: 'B' }) }, guardOf('h', { copyFrom: 'g' }), { after: [matched], ticket: stored }),
        meta.write({ sets: [{ id: 'new', data: 'bound' }], removes: ['old'] }, undefined, { after: [stored] }),
      ];
    };
    const start = calls.length;
    expect(await Promise.all(move('stale'))).toEqual(['changed', 'skipped', 'skipped']);
    expect(calls.slice(start)).toEqual(['batch']);
    expect(await storage.findIdentifiersByTag('h')).toEqual([]);
    expect(await Promise.all(move('resumed'))).toEqual(['ok', 'ok', 'ok']);
    expect(await storage.getMany(['h.a', 'h.b'])).toEqual(['A', 'B']);
    expect(await meta.getMany(['old', 'new'])).toEqual([undefined, 'bound']);
  });

  it('a copy carries over what the source holds when it runs, and concurrent moves and writes of the source do not deadlock', async () => {
    const batcher = new PostgresWriteBatcher({ pool, schema: SCHEMA });
    const storage = backend(batcher);
    const other = backend(new PostgresWriteBatcher({ pool, schema: SCHEMA }), storage.namespace);
    expect(await storage.write({ sets: entries('src', { a: 'A' }) }, guardOf('src'))).toBe('ok');
    // A guarded write of the source and moves out of it, from two batchers (two connections),
    // also a move each way between two groups (their advisory locks in opposite chain orders).
    expect(await other.write({ sets: entries('p', { a: 'P' }) }, guardOf('p'))).toBe('ok');
    expect(await other.write({ sets: entries('q', { a: 'Q' }) }, guardOf('q'))).toBe('ok');
    for (let round = 0; round < 10; round++) {
      const results = await Promise.all([
        other.write({ sets: entries('src', { a: `A${round}` }) }, { id: 'src.~guard', fence: round + 1 }),
        storage.write({}, guardOf(`to${round}`, { copyFrom: 'src' })),
        storage.write({ sets: entries(`pq${round}`, { b: 'B' }) }, guardOf(`pq${round}`, { copyFrom: 'p' })),
        other.write({ sets: entries('p', { c: `C${round}` }) }, { id: 'p.~guard', fence: round + 1 }),
        other.write({}, guardOf(`qp${round}`, { copyFrom: 'q' })),
        storage.write({ sets: entries('q', { c: `C${round}` }) }, { id: 'q.~guard', fence: round + 1 }),
      ]);
      expect(results).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'ok']);
      // The copy is the source before or after the concurrent write, never a mix.
      expect([round === 0 ? 'A' : `A${round - 1}`, `A${round}`]).toContain(await storage.get(`to${round}.a`));
    }
  });

  it('the version-2 write signature still answers as before (no mustMatch, no copyFrom)', async () => {
    const namespace = uniqueNamespace('v2');
    const now = new Date().toISOString();
    const { rows } = await pool.query<{ result: string }>(
      `SELECT ${SCHEMA}.nest_session_write($1, $2::timestamptz, $3, $4::double precision, $5, $6, $7::text[], $8, $9::timestamptz, ` +
        `$10::text[], $11::text[], $12::text[], $13::timestamptz[], $14::text[], $15::text[], $16::text[], $17, $18::integer, $19) AS result`,
      [
        namespace,
        now,
        'g.~guard',
        1,
        '1',
        true,
        ['g'],
        false,
        null,
        [],
        ['g.k'],
        ['v'],
        [null],
        ['g.k'],
        ['g'],
        [],
        null,
        1,
        null,
      ],
    );
    expect(rows[0]!.result).toBe('ok');
    const read = new PostgresBackend({ pool, schema: SCHEMA, namespace });
    expect(await read.getMany(['g.k', 'g.~guard'])).toEqual(['v', '1']);
  });
});
