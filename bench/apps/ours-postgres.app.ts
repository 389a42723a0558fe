import { createPostgresSessionStores } from '../../lib/postgres/index.js';
import type { HttpAdapterName } from '../variants.js';
import { COOKIE_NAME, SESSION_TTL } from '../variants.js';
import { createNestApp, type BenchApp } from './nest.js';
import { OursModule } from './ours.app.js';
import { BENCH_POSTGRES_URL, benchSchema, dropSchema } from './postgres.js';

/**
 * Ours on PostgreSQL as the README sets it up: createPostgresSessionStores (one pool of 10
 * connections for both caches and the locker) and migrate(), in a schema of its own, dropped
 * at the end.
 */
export async function buildOursPostgresApp(adapter: HttpAdapterName): Promise<BenchApp> {
  const schema = benchSchema('ours');
  const stores = await createPostgresSessionStores({ connectionString: BENCH_POSTGRES_URL, schema });
  await stores.migrate();
  const app = await createNestApp(
    OursModule.forRoot({
      cookie: { name: COOKIE_NAME },
      inactivityTimeout: SESSION_TTL,
      metadataBackend: stores.metadataBackend,
      storageBackend: stores.storageBackend,
      locker: stores.locker,
    }),
    adapter,
  );
  return {
    app,
    info: 'PostgresBackend x2 and PostgresLocker on one pg.Pool (10 connections, prepared statements), DevalueSerializer',
    close: async () => {
      await app.close(); // closes the locker, which ends the pool
      await dropSchema(schema).catch(() => undefined);
    },
  };
}
