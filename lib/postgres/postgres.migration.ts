import { InvalidOptionException } from '../errors/invalid-option.exception.js';
import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import { rowsOf, type PostgresPool } from './postgres-client.js';
import { PostgresNames, type PostgresSchemaOptions } from './postgres-names.js';
import { POSTGRES_SCHEMA_VERSION, postgresSchemaSql } from './postgres-schema.js';

/** Client-side deadline of the migration's statements (waiting for another instance's run included). */
const MIGRATION_TIMEOUT_MS = 5 * 60 * 1000;

/** What {@link migratePostgresSchema} did. */
export interface PostgresMigrationResult {
  /** The schema version found before (0: none). */
  readonly from: number;
  /** The schema version now. */
  readonly to: number;
}

/**
 * Creates or upgrades the session schema (tables, indexes, functions) and records its version
 * in `<tablePrefix>schema_version`. Idempotent and safe to run from every instance at boot:
 * one transaction under an advisory lock, so concurrent runs wait for each other and the later
 * ones find the schema current. Needs the rights to create a schema (unless it exists), tables
 * and functions; teams that run migrations themselves apply `postgresSchemaSql()` instead.
 * @throws InvalidOptionException for a bad schema or prefix, or a database whose schema is
 *   newer than this release knows (upgrade the package).
 * @throws StoreUnavailableException when PostgreSQL fails (nothing was changed).
 */
export async function migratePostgresSchema(
  pool: PostgresPool,
  options: PostgresSchemaOptions = {},
): Promise<PostgresMigrationResult> {
  const names = new PostgresNames(options);
  let client;
  try {
    client = await pool.connect();
  } catch (error) {
    throw StoreUnavailableException.atBoot('postgres migrate', error);
  }
  let failed: unknown;
  try {
    await client.query('BEGIN');
    // Waiting for another instance's migration, or a slow DDL, must not hit the pool's statement deadlines.
    await client.query('SET LOCAL statement_timeout = 0');
    await client.query({
      text: 'SELECT pg_advisory_xact_lock(hashtext($1))',
      values: [`nest-session migrate ${names.schema}.${names.tablePrefix}`],
      query_timeout: MIGRATION_TIMEOUT_MS,
    });
    const [table] = rowsOf<{ name: string | null }>(
      await client.query({ text: 'SELECT to_regclass($1)::text AS name', values: [names.versions()] }),
    );
    let from = 0;
    if (table?.name !== null && table?.name !== undefined) {
      const [row] = rowsOf<{ version: number | null }>(
        await client.query(`SELECT max(version) AS version FROM ${names.versions()}`),
      );
      from = row?.version ?? 0;
    }
    if (from > POSTGRES_SCHEMA_VERSION) {
      throw InvalidOptionException.create(
        'postgres.schema',
        `holds session schema version ${from}, newer than this release of nest-session knows (${POSTGRES_SCHEMA_VERSION}): upgrade the package`,
      );
    }
    if (from < POSTGRES_SCHEMA_VERSION) {
      await client.query({ text: postgresSchemaSql(options), query_timeout: MIGRATION_TIMEOUT_MS });
    }
    await client.query('COMMIT');
    return { from, to: POSTGRES_SCHEMA_VERSION };
  } catch (error) {
    failed = error;
    await client.query('ROLLBACK').catch(() => undefined);
    if (error instanceof InvalidOptionException) throw error;
    throw StoreUnavailableException.atBoot('postgres migrate', error);
  } finally {
    // A connection whose transaction state is unknown is not given back to the pool.
    client.release(failed !== undefined);
  }
}
