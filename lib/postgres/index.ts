// Public API of the PostgreSQL engine ('nest-session/postgres'); needs the optional peer `pg`
// at run time only (its declarations name no type of `pg`).
export { PostgresBackend, type PostgresBackendOptions } from './postgres.backend.js';
export { PostgresLocker, type PostgresLockerOptions } from './postgres.locker.js';
export {
  createPostgresSessionStores,
  type PostgresSessionStores,
  type PostgresSessionStoresOptions,
} from './postgres-session.factory.js';
export {
  PostgresWriteBatcher,
  BatchedOperationError,
  type PostgresWriteBatcherOptions,
  type BatchedOperation,
  type BatchedWriteArguments,
} from './postgres-write.batcher.js';
export { migratePostgresSchema, type PostgresMigrationResult } from './postgres.migration.js';
export { POSTGRES_SCHEMA_SQL, POSTGRES_SCHEMA_VERSION, postgresSchemaSql } from './postgres-schema.js';
export type { PostgresSchemaOptions } from './postgres-names.js';
export type {
  PostgresPool,
  PostgresPoolClient,
  PostgresQueryable,
  PostgresQuery,
  PostgresResult,
  PostgresNotification,
} from './postgres-client.js';
