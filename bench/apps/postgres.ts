import pg from 'pg';

/** The PostgreSQL server of the bench: `BENCH_POSTGRES_URL`, default the local one (trust, user postgres). */
export const BENCH_POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A schema name no other bench app or run uses (this process's pid and the time). */
export function benchSchema(name: string): string {
  return `nsbench_${name}_${process.pid}_${Date.now().toString(36)}`;
}

/** Drops a bench app's schema with everything in it (on a connection of its own). */
export async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: BENCH_POSTGRES_URL, connectionTimeoutMillis: 2000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end().catch(() => undefined);
  }
}
