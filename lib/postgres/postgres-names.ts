import { InvalidOptionException } from '../errors/invalid-option.exception.js';

/** Where the session tables live: a schema and a prefix for every table and function name. */
export interface PostgresSchemaOptions {
  /**
   * The PostgreSQL schema of the tables and functions (created by `migrate()` if missing).
   * Lower-case letters, digits and `_`, starting with a letter or `_`, at most 63 characters.
   * @default 'public'
   */
  schema?: string;
  /**
   * Prepended to every table, sequence and function name (`<tablePrefix>entries`, ...), so
   * several applications can keep their sessions in one schema. Lower-case letters, digits and
   * `_`, starting with a letter or `_`, at most 40 characters (names stay under PostgreSQL's
   * 63-byte limit).
   * @default 'nest_session_'
   */
  tablePrefix?: string;
}

const DEFAULT_SCHEMA = 'public';
const DEFAULT_TABLE_PREFIX = 'nest_session_';
const SCHEMA_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;
const PREFIX_PATTERN = /^[a-z_][a-z0-9_]{0,39}$/;

/**
 * The quoted, schema-qualified names of every object of the session schema. Values never go
 * into SQL text; these names do, which is why they are checked against a strict pattern first
 * and quoted as identifiers.
 */
export class PostgresNames {
  readonly schema: string;
  readonly tablePrefix: string;

  /** @throws InvalidOptionException for a schema or prefix outside the allowed characters. */
  constructor(options: PostgresSchemaOptions = {}) {
    const schema = options.schema ?? DEFAULT_SCHEMA;
    const tablePrefix = options.tablePrefix ?? DEFAULT_TABLE_PREFIX;
    if (typeof schema !== 'string' || !SCHEMA_PATTERN.test(schema)) {
      throw InvalidOptionException.create(
        'postgres.schema',
        `must be 1-63 lower-case letters, digits or "_" (starting with a letter or "_"), got ${JSON.stringify(schema)}`,
      );
    }
    if (typeof tablePrefix !== 'string' || !PREFIX_PATTERN.test(tablePrefix)) {
      throw InvalidOptionException.create(
        'postgres.tablePrefix',
        `must be 1-40 lower-case letters, digits or "_" (starting with a letter or "_"), got ${JSON.stringify(tablePrefix)}`,
      );
    }
    this.schema = schema;
    this.tablePrefix = tablePrefix;
  }

  /** `"schema"."<prefix>name"`. */
  qualified(name: string): string {
    return `${quoteIdentifier(this.schema)}.${quoteIdentifier(this.tablePrefix + name)}`;
  }

  /** The quoted schema alone. */
  get quotedSchema(): string {
    return quoteIdentifier(this.schema);
  }

  /** `schema.<prefix>`, as a SQL string literal: the class of the advisory locks taken by the functions. */
  get lockClassLiteral(): string {
    return `'${this.schema}.${this.tablePrefix}'`;
  }

  /** The NOTIFY channel of the locker (an identifier of the allowed characters only, so LISTEN can name it). */
  get channel(): string {
    return `${this.schema}_${this.tablePrefix}lock_released`.slice(0, 63);
  }

  readonly entries = (): string => this.qualified('entries');
  readonly tags = (): string => this.qualified('tags');
  readonly locks = (): string => this.qualified('locks');
  readonly waiters = (): string => this.qualified('lock_waiters');
  readonly tombstones = (): string => this.qualified('lock_tombstones');
  readonly tickets = (): string => this.qualified('lock_tickets');
  readonly versions = (): string => this.qualified('schema_version');
  readonly fn = (name: string): string => this.qualified(name);
}

/** A double-quoted identifier (names are checked before: no quote can occur). */
export function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
