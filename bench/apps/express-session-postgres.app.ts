import connectPgSimple from 'connect-pg-simple';
import session from 'express-session';
import pg from 'pg';
import { COOKIE_NAME, PEER_SECRET, SESSION_TTL } from '../variants.js';
import { createNestApp, type BenchApp } from './nest.js';
import { ExpressSessionModule } from './express-session.app.js';
import { BENCH_POSTGRES_URL, benchSchema, dropSchema } from './postgres.js';

/**
 * express-session with connect-pg-simple 10 as its README sets it up (`createTableIfMissing`,
 * its default pruning), on a pg.Pool of 10 connections like ours, in a schema of its own,
 * dropped at the end. Same express-session settings as the other peer rows.
 */
export async function buildExpressSessionPostgresApp(): Promise<BenchApp> {
  const schema = benchSchema('peer');
  const pool = new pg.Pool({ connectionString: BENCH_POSTGRES_URL, max: 10 });
  pool.on('error', (error: Error) => console.error(`[bench app] postgres: ${error.message}`));
  await pool.query(`CREATE SCHEMA "${schema}"`);
  const PgStore = connectPgSimple(session);
  const store = new PgStore({ pool, schemaName: schema, tableName: 'session', createTableIfMissing: true, ttl: SESSION_TTL });
  const app = await createNestApp(ExpressSessionModule, 'express', {
    express: (app) => {
      app.use(
        session({
          name: COOKIE_NAME,
          secret: PEER_SECRET,
          resave: false,
          saveUninitialized: false,
          store,
          cookie: { httpOnly: true, sameSite: 'lax', secure: false, path: '/' },
        }),
      );
    },
  });
  return {
    app,
    info: `resave: false, saveUninitialized: false, secret; connect-pg-simple 10 (ttl ${SESSION_TTL}, pg.Pool of 10)`,
    close: async () => {
      await app.close();
      // connect-pg-simple 10 returns a promise; its typings say void.
      await (store as unknown as { close(): Promise<void> }).close();
      await pool.end().catch(() => undefined);
      await dropSchema(schema).catch(() => undefined);
    },
  };
}
