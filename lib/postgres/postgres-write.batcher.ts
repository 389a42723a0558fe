import { positionsIn, runInOrder, type WriteOrder, type WriteTicket } from '../cache/write-ticket.js';
import { rowsOf, Statement, type PostgresQueryable } from './postgres-client.js';
import { PostgresNames, type PostgresSchemaOptions } from './postgres-names.js';

/** The argument types of `batch`'s operation arrays (the version-2/3 signature; version 4 adds the chains' two, version 5 mustMatch's three and copyFrom). */
export const BATCH_OPERATION_TYPES: readonly string[] = [
  'text[]', 'text[]', 'timestamptz[]', 'text[]',
  'double precision[]', 'text[]', 'boolean[]',
  'boolean[]', 'timestamptz[]', 'text[]',
  'integer[]', 'text[]',
  'integer[]', 'text[]',
  'integer[]', 'text[]',
  'integer[]', 'text[]', 'text[]', 'timestamptz[]',
  'integer[]', 'text[]', 'text[]',
  'integer[]', 'text[]',
]; // prettier-ignore

/** Options of {@link PostgresWriteBatcher}. */
export interface PostgresWriteBatcherOptions extends PostgresSchemaOptions {
  /** The pool the batched statements run on (the backends' pool). */
  pool: PostgresQueryable;
  /** Named prepared statements (see `PostgresBackendOptions.preparedStatements`). @default true */
  preparedStatements?: boolean;
}

/** The arguments of one `write` function call (see the schema), as the backend encodes them. */
export interface BatchedWriteArguments {
  readonly guardId: string | null;
  readonly guardFence: number | null;
  readonly guardValue: string | null;
  readonly guardCreate: boolean;
  readonly guardTags: readonly string[];
  readonly guardLifetime: boolean;
  readonly guardExpires: string | null;
  readonly mustExist: readonly string[];
  readonly ids: readonly string[];
  readonly values: readonly string[];
  readonly expires: readonly (string | null)[];
  readonly tagIds: readonly string[];
  readonly tagTags: readonly string[];
  readonly removes: readonly string[];
  readonly lockName: string | null;
  readonly maxEntries: number | null;
  readonly uncountedPrefix: string | null;
  /** `WriteBatch.mustMatch`: ids and the values they must hold (aligned). */
  readonly mustMatchIds: readonly string[];
  readonly mustMatchValues: readonly string[];
  /** `WriteGuard.copyFrom`, or null. */
  readonly copyFrom: string | null;
}

/** One operation a backend hands to the batcher. */
export type BatchedOperation =
  | { readonly kind: 'write'; readonly namespace: string; readonly now: string; readonly write: BatchedWriteArguments }
  | { readonly kind: 'remove'; readonly namespace: string; readonly now: string; readonly key: string }
  | {
      readonly kind: 'flush';
      readonly namespace: string;
      readonly now: string;
      readonly key: string;
      /** The flushed group's lock row, deleted with it while free (schema version 6); null = none. */
      readonly lockName?: string | null;
    };

/** What `batch` answers for an operation that required one that did not apply (see `WriteOrder`). */
export const SKIPPED_ANSWER = 'skipped';

interface Queued {
  readonly operation: BatchedOperation;
  /** The operation as its own statement, answering what `batch` would answer for it. */
  readonly alone: () => Promise<string>;
  /** Positions, in this tick's queue, of the operations it requires. */
  readonly after: readonly number[];
  readonly resolve: (answer: string) => void;
  readonly reject: (error: unknown) => void;
}

const NO_TICKETS: readonly WriteTicket[] = [];
const NO_POSITIONS: readonly number[] = [];

/** A refusal that `batch` caught for one operation: its SQLSTATE and message, as node-postgres reports them. */
export class BatchedOperationError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'BatchedOperationError';
  }
}

/**
 * Sends the writes that several `PostgresBackend`s on one pool issue in the same tick (the
 * session stores' metadata and storage writes of one commit) as ONE statement, one call of the
 * schema's `batch` function: one transaction, one WAL flush instead of one per write. Each
 * operation is applied and answered exactly as if it had been sent alone (the write function
 * answers refusals, it does not raise; an exception is caught per operation and rolls back that
 * operation only).
 *
 * - What is "the same tick": the operations submitted before the microtask queued at the first
 *   submission runs, i.e. in one synchronous run of the caller (`Promise.all([a.write(),
 *   b.write()])`). An operation alone in its tick goes out as its own statement, unchanged.
 * - Independent operations: at most one per namespace in one call, and the calls run them in
 *   namespace order: each operation takes its row and advisory locks in byte order within its
 *   namespace, so transactions holding a metadata row and a storage group lock are always taken
 *   in the same order and cannot deadlock. Further operations of a namespace in the same tick go
 *   out as further calls, beside it.
 * - A failure of the statement (connection lost, statement timeout) fails every operation of
 *   the call, none of which was applied (one transaction).
 * - Chains (`WriteOrder`): an operation that requires operations queued in the same tick goes
 *   into ONE call with them (a login's guard check, new storage, removal of the old id, new
 *   metadata and flush of the old storage: one transaction, one WAL flush instead of one per
 *   step), in the order they were submitted, which is the order of the chain; `batch` runs it
 *   only if each of them applied, else it answers `skipped` having written nothing. Such a call
 *   holds several operations per namespace, out of namespace order: `batch` then takes every
 *   lock they will wait for first, in the schema's lock order (see the schema), which keeps the
 *   deadlock freedom above. An operation requiring one that is not in this tick's queue (sent
 *   in an earlier tick, or to another batcher or backend) waits for it first (`runInOrder`).
 */
export class PostgresWriteBatcher {
  /** The schema and table prefix the batched functions live in. */
  readonly names: PostgresNames;
  private readonly pool: PostgresQueryable;
  private readonly prepare: boolean;
  private readonly statement: Statement;
  private queue: Queued[] = [];
  /** Counts flushes: a ticket queued in tick n can be required inside the call while this is still n. */
  private tick = 0;

  /** @throws InvalidOptionException for a bad schema or table prefix. */
  constructor(options: PostgresWriteBatcherOptions) {
    this.names = new PostgresNames(options);
    this.pool = options.pool;
    this.prepare = options.preparedStatements ?? true;
    const p = (n: number, type: string) => `$${n}::${type}`;
    const types = [...BATCH_OPERATION_TYPES, 'integer[]', 'integer[]', 'integer[]', 'text[]', 'text[]', 'text[]'];
    this.statement = new Statement(
      `SELECT ${this.names.fn('batch')}(${types.map((type, i) => p(i + 1, type)).join(', ')}) AS results`,
    );
  }

  /** The pool the batched statements run on. */
  get queryable(): PostgresQueryable {
    return this.pool;
  }

  /**
   * Queues an operation for this tick's call; answers what `batch` answers for it (`skipped`
   * when an operation it requires did not apply), and settles `order.ticket` with whether it
   * applied (a write answered `ok`, a remove removed a live entry, a flush ran).
   * @param alone runs the operation as its own statement (used when nothing shares its tick).
   * @param order the operations it requires (run in the same call when queued in this tick,
   *   else waited for) and its ticket. @default undefined (independent)
   * @throws BatchedOperationError when the operation raised inside the batch (only it was rolled back);
   *   the driver's error when the statement failed (nothing of the call was applied).
   */
  submit(operation: BatchedOperation, alone: () => Promise<string>, order?: WriteOrder): Promise<string> {
    const required = order?.after ?? NO_TICKETS;
    let after = NO_POSITIONS;
    if (required.length > 0) {
      const positions = positionsIn(required, this, this.tick);
      if (positions === undefined) {
        // Not in this tick's queue: wait for it (and the rest), then queue alone (or skip).
        return runInOrder(
          order,
          () => this.submit(operation, alone),
          (answer) => batchedOperationApplied(operation.kind, answer),
          SKIPPED_ANSWER,
        );
      }
      after = positions;
    }
    const ticket = order?.ticket;
    if (ticket !== undefined) ticket.queued = { channel: this, batch: this.tick, position: this.queue.length };
    const answer = new Promise<string>((resolve, reject) => {
      if (this.queue.length === 0) queueMicrotask(() => this.flush());
      this.queue.push({ operation, alone, after, resolve, reject });
    });
    if (ticket === undefined) return answer;
    return ticket.follow(answer, (text) => batchedOperationApplied(operation.kind, text));
  }

  private flush(): void {
    const queued = this.queue;
    this.queue = [];
    this.tick++;
    // Chains: operations joined by what they require (union-find), each chain one call in queue order.
    const root = queued.map((_, i) => i);
    const find = (i: number): number => (root[i] === i ? i : (root[i] = find(root[i]!)));
    queued.forEach((item, i) => item.after.forEach((j) => (root[find(i)] = find(j))));
    const members = new Map<number, number[]>();
    queued.forEach((_, i) => {
      const chain = members.get(find(i));
      if (chain === undefined) members.set(find(i), [i]);
      else chain.push(i);
    });
    const independent: Queued[] = [];
    for (const positions of members.values()) {
      if (positions.length === 1) {
        independent.push(queued[positions[0]!]!);
        continue;
      }
      // Positions within the call, 1-based, as `batch` reads them.
      const within = new Map(positions.map((i, k) => [i, k + 1]));
      const chain = positions.map((i) => queued[i]!);
      this.send(
        chain,
        chain.map((item) => item.after.map((j) => within.get(j)!)),
      );
    }
    // First fit: each call of independent operations holds at most one per namespace.
    const calls: Queued[][] = [];
    for (const item of independent) {
      const call = calls.find((c) => !c.some((other) => other.operation.namespace === item.operation.namespace));
      if (call === undefined) calls.push([item]);
      else call.push(item);
    }
    for (const call of calls) {
      if (call.length === 1) {
        const [only] = call as [Queued];
        settle(only.alone).then(only.resolve, only.reject);
      } else {
        call.sort((a, b) => (a.operation.namespace < b.operation.namespace ? -1 : 1));
        this.send(
          call,
          call.map(() => NO_POSITIONS),
        );
      }
    }
  }

  /** One call of `batch`; `after[i]`: the 1-based positions in the call that operation i requires. */
  private send(call: readonly Queued[], after: readonly (readonly number[])[]): void {
    settle(() =>
      this.pool.query(
        this.statement.with(
          encode(
            call.map((item) => item.operation),
            after,
          ),
          this.prepare,
        ),
      ),
    ).then(
      (result) => {
        const [row] = rowsOf<{ results: string[] | null }>(result);
        const answers = row?.results ?? [];
        call.forEach((item, i) => {
          const answer = answers[i];
          if (answer === undefined) item.reject(new Error('batch answered fewer results than operations'));
          else if (answer.startsWith('error ')) item.reject(operationError(answer));
          else item.resolve(answer);
        });
      },
      (error: unknown) => call.forEach((item) => item.reject(error)),
    );
  }
}

/**
 * `work()`, with a synchronous throw turned into a rejection: this runs in a microtask of its
 * own, where a throw would reach no caller (and end the process).
 */
function settle<T>(work: () => Promise<T>): Promise<T> {
  try {
    return work();
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)));
  }
}

/**
 * Whether an operation that answered `answer` applied, for the writes that require it (see
 * `WriteOrder`): a write answered `ok`, a remove removed a live entry, a flush ran. The rule
 * `batch` applies inside a call.
 */
export function batchedOperationApplied(kind: BatchedOperation['kind'], answer: string): boolean {
  if (kind === 'write') return answer === 'ok';
  if (kind === 'remove') return answer === 'true';
  return answer !== SKIPPED_ANSWER;
}

/** `error <SQLSTATE> <message>` as an error carrying the code, like node-postgres' own. */
function operationError(answer: string): BatchedOperationError {
  const code = answer.slice(6, 11);
  return new BatchedOperationError(code, answer.slice(12));
}

/** The 31 array parameters of `batch` (version 5), per operation or flattened with end offsets. */
function encode(operations: readonly BatchedOperation[], after: readonly (readonly number[])[]): unknown[] {
  const kinds: string[] = [];
  const namespaces: string[] = [];
  const nows: string[] = [];
  const keys: (string | null)[] = [];
  const fences: (number | null)[] = [];
  const guardValues: (string | null)[] = [];
  const creates: boolean[] = [];
  const lifetimes: boolean[] = [];
  const guardExpires: (string | null)[] = [];
  const lockNames: (string | null)[] = [];
  const maxEntries: (number | null)[] = [];
  const uncounted: (string | null)[] = [];
  const copyFroms: (string | null)[] = [];
  const flat = {
    mustMatchIds: new Flat<string>(),
    mustMatchValues: [] as string[],
    guardTags: new Flat<string>(),
    mustExist: new Flat<string>(),
    ids: new Flat<string>(),
    values: [] as string[],
    expires: [] as (string | null)[],
    tagIds: new Flat<string>(),
    tagTags: [] as string[],
    removes: new Flat<string>(),
    after: new Flat<number>(),
  };
  for (const operation of operations) {
    kinds.push(operation.kind);
    namespaces.push(operation.namespace);
    nows.push(operation.now);
    const write = operation.kind === 'write' ? operation.write : undefined;
    keys.push(write === undefined ? (operation as { key: string }).key : write.guardId);
    fences.push(write?.guardFence ?? null);
    guardValues.push(write?.guardValue ?? null);
    creates.push(write?.guardCreate ?? false);
    lifetimes.push(write?.guardLifetime ?? false);
    guardExpires.push(write?.guardExpires ?? null);
    lockNames.push(write?.lockName ?? (operation.kind === 'flush' ? (operation.lockName ?? null) : null));
    maxEntries.push(write?.maxEntries ?? null);
    uncounted.push(write?.uncountedPrefix ?? null);
    copyFroms.push(write?.copyFrom ?? null);
    flat.mustMatchIds.add(write?.mustMatchIds);
    flat.mustMatchValues.push(...(write?.mustMatchValues ?? []));
    flat.guardTags.add(write?.guardTags);
    flat.mustExist.add(write?.mustExist);
    flat.ids.add(write?.ids);
    flat.values.push(...(write?.values ?? []));
    flat.expires.push(...(write?.expires ?? []));
    flat.tagIds.add(write?.tagIds);
    flat.tagTags.push(...(write?.tagTags ?? []));
    flat.removes.add(write?.removes);
  }
  for (const positions of after) flat.after.add(positions);
  return [
    kinds,
    namespaces,
    nows,
    keys,
    fences,
    guardValues,
    creates,
    lifetimes,
    guardExpires,
    lockNames,
    maxEntries,
    uncounted,
    flat.guardTags.ends,
    flat.guardTags.items,
    flat.mustExist.ends,
    flat.mustExist.items,
    flat.ids.ends,
    flat.ids.items,
    flat.values,
    flat.expires,
    flat.tagIds.ends,
    flat.tagIds.items,
    flat.tagTags,
    flat.removes.ends,
    flat.removes.items,
    flat.after.ends,
    flat.after.items,
    flat.mustMatchIds.ends,
    flat.mustMatchIds.items,
    flat.mustMatchValues,
    copyFroms,
  ];
}

/** Lists of several operations in one array, with the end offset of each operation's slice. */
class Flat<T> {
  readonly items: T[] = [];
  readonly ends: number[] = [];

  add(list: readonly T[] | undefined): void {
    if (list !== undefined) this.items.push(...list);
    this.ends.push(this.items.length);
  }
}
