import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { WriteTicket } from '../../lib/cache/write-ticket.js';
import { PostgresBackend } from '../../lib/postgres/postgres.backend.js';
import { migratePostgresSchema } from '../../lib/postgres/postgres.migration.js';
import { POSTGRES_SCHEMA_VERSION } from '../../lib/postgres/postgres-schema.js';
import { PostgresWriteBatcher } from '../../lib/postgres/postgres-write.batcher.js';
import { PostgresLocker } from '../../lib/postgres/postgres.locker.js';
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

  it('a chain with an unlocked write of a group whose lock row does not exist yet does not deadlock with a lone unlocked write of it', async () => {
    // A tag commit without the lock (mustMatch, the unlocked storage write, the metadata) beside
    // a data commit of a fresh session, whose lock was never taken: the lone write inserts the
    // lock row and then waits for the group's advisory lock, which the chain took first. Forced
    // here: the test holds the advisory lock until both wait, the chain queued first.
    const locker = new PostgresLocker({ pool, schema: SCHEMA, prefix: uniqueNamespace('lk') + ':' });
    const batcher = new PostgresWriteBatcher({ pool, schema: SCHEMA });
    const meta = backend(batcher);
    const storage = new PostgresBackend({ pool, schema: SCHEMA, namespace: uniqueNamespace('st'), batcher, locker });
    const lone = new PostgresBackend({ pool, schema: SCHEMA, namespace: storage.namespace, locker });
    await meta.set('key', 'resumed');
    expect(await storage.write({ sets: entries('fresh', { a: 'A' }) }, guardOf('fresh'))).toBe('ok');
    const holder = await pool.connect();
    const waiting = async (n: number) => {
      for (let i = 0; i < 200; i++) {
        const { rows } = await pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
        );
        if (rows[0]!.n >= n) return;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      throw new Error(`fewer than ${n} statements wait`);
    };
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))', [
        `${SCHEMA}.nest_session_`,
        `${storage.namespace} fresh`,
      ]);
      const unlocked = { id: 'fresh.~guard', fence: 0, unlocked: true };
      const matched = new WriteTicket();
      const stored = new WriteTicket();
      const chain = Promise.all([
        meta.write({ mustMatch: [{ id: 'key', data: 'resumed' }] }, undefined, { ticket: matched }),
        storage.write({ sets: entries('fresh', { b: 'B' }) }, unlocked, { after: [matched], ticket: stored }),
        meta.write({ sets: [{ id: 'key', data: 'tagged' }], mustExist: ['key'] }, undefined, { after: [stored] }),
      ]);
      await waiting(1);
      const alone = lone.write({ sets: entries('fresh', { c: 'C' }) }, unlocked);
      await waiting(2);
      await holder.query('COMMIT');
      expect(await chain).toEqual(['ok', 'ok', 'ok']);
      expect(await alone).toBe('ok');
    } finally {
      holder.release();
      await locker.close();
    }
    expect(await storage.getMany(['fresh.a', 'fresh.b', 'fresh.c'])).toEqual(['A', 'B', 'C']);
    expect(await meta.get('key')).toBe('tagged');
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

/** The write function's arguments of versions 2 to 4 (19), as a version-4 instance sends them. */
const V4_WRITE = Array.from({ length: 19 }, (_, i) => {
  const types: Record<number, string> = {
    2: '::timestamptz', 4: '::double precision', 7: '::text[]', 9: '::timestamptz', 10: '::text[]', 11: '::text[]',
    12: '::text[]', 13: '::timestamptz[]', 14: '::text[]', 15: '::text[]', 16: '::text[]', 18: '::integer',
  }; // prettier-ignore
  return `$${i + 1}${types[i + 1] ?? ''}`;
}).join(', ');

/** The batch function's arguments of version 4 (27, with the chains), as a version-4 instance sends them. */
const V4_BATCH = [
  'text[]', 'text[]', 'timestamptz[]', 'text[]', 'double precision[]', 'text[]', 'boolean[]', 'boolean[]', 'timestamptz[]',
  'text[]', 'integer[]', 'text[]', 'integer[]', 'text[]', 'integer[]', 'text[]', 'integer[]', 'text[]', 'text[]',
  'timestamptz[]', 'integer[]', 'text[]', 'text[]', 'integer[]', 'text[]', 'integer[]', 'integer[]',
].map((type, i) => `$${i + 1}::${type}`).join(', '); // prettier-ignore

describe('schema version 5', () => {
  it('migrate() upgrades a database of version 4: its sessions stay, version-4 calls answer as before, groups move without the lock', async () => {
    const old = await createTestDatabase();
    try {
      // What the release before created (test/support/postgres-schema-v4.sql), and a session it stored.
      await old.pool.query(await readFile(new URL('../support/postgres-schema-v4.sql', import.meta.url), 'utf8'));
      const now = new Date().toISOString();
      const later = new Date(Date.now() + 600_000).toISOString();
      const v4Write = async (values: unknown[]) =>
        (await old.pool.query<{ r: string }>(`SELECT public.nest_session_write(${V4_WRITE}) AS r`, values)).rows[0]!.r;
      // storage: guard g.~guard (created, tagged g) and g.cart; metadata: entry old.
      expect(
        await v4Write(['s', now, 'g.~guard', 0, '0', true, ['g'], true, later, [], ['g.cart'], ['v4'], [null], ['g.cart'], ['g'], [], null, 10, '~']),
      ).toBe('ok'); // prettier-ignore
      expect(
        await v4Write(['m', now, null, null, null, false, [], false, null, [], ['old'], ['meta'], [later], ['old', 'old'], ['all', 'owner'], [], null, null, null]),
      ).toBe('ok'); // prettier-ignore

      expect(await migratePostgresSchema(old.pool)).toEqual({ from: 4, to: POSTGRES_SCHEMA_VERSION });
      const { rows: functions } = await old.pool.query<{ name: string; args: number; language: string }>(
        `SELECT p.proname AS name, p.pronargs AS args, l.lanname AS language FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
          WHERE p.pronamespace = 'public'::regnamespace AND p.proname IN ('nest_session_write', 'nest_session_batch')
          ORDER BY p.proname, p.pronargs`,
      );
      expect(functions).toEqual([
        { name: 'nest_session_batch', args: 25, language: 'sql' },
        { name: 'nest_session_batch', args: 27, language: 'sql' },
        { name: 'nest_session_batch', args: 31, language: 'plpgsql' },
        { name: 'nest_session_write', args: 17, language: 'sql' },
        { name: 'nest_session_write', args: 19, language: 'sql' },
        { name: 'nest_session_write', args: 22, language: 'plpgsql' },
      ]);

      // A version-4 instance during the rolling upgrade: a chain (storage guard check, then a
      // metadata write that requires it: out of namespace order, so locked up front).
      const { rows: chain } = await old.pool.query<{ results: string[] }>(`SELECT public.nest_session_batch(${V4_BATCH}) AS results`, [
        ['write', 'write'], ['s', 'm'], [now, now], ['g.~guard', null], [5, null], ['5', null], [false, false],
        [false, false], [null, null], [null, null], [null, null], [null, null], [0, 0], [], [0, 0], [],
        [0, 1], ['x'], ['X'], [null], [0, 0], [], [], [0, 0], [], [0, 1], [1],
      ]); // prettier-ignore
      expect(chain[0]!.results).toEqual(['ok', 'ok']);
      expect(
        await v4Write(['s', now, 'g.~guard', 4, '4', false, [], false, null, [], [], [], [], [], [], [], null, null, null]),
      ).toBe('fenced');

      // This release on the upgraded database: the session is there, and moves without the lock.
      const batcher = new PostgresWriteBatcher({ pool: old.pool });
      const meta = new PostgresBackend({ pool: old.pool, namespace: 'm', batcher });
      const storage = new PostgresBackend({ pool: old.pool, namespace: 's', batcher });
      expect(await storage.getMany(['g.cart', 'g.~guard'])).toEqual(['v4', '5']);
      expect(await meta.getMany(['old', 'x'])).toEqual(['meta', 'X']);
      const matched = new WriteTicket();
      const stored = new WriteTicket();
      expect(
        await Promise.all([
          meta.write({ mustMatch: [{ id: 'old', data: 'meta' }] }, undefined, { ticket: matched }),
          storage.write({}, guardOf('h', { copyFrom: 'g' }), { after: [matched], ticket: stored }),
          meta.write({ sets: [{ id: 'new', data: 'moved' }], removes: ['old'] }, undefined, { after: [stored] }),
        ]),
      ).toEqual(['ok', 'ok', 'ok']);
      expect(await storage.get('h.cart')).toBe('v4');
      expect(await meta.getMany(['old', 'new'])).toEqual([undefined, 'moved']);
      expect(await migratePostgresSchema(old.pool)).toEqual({ from: POSTGRES_SCHEMA_VERSION, to: POSTGRES_SCHEMA_VERSION });
    } finally {
      await old.drop();
    }
  });
});
