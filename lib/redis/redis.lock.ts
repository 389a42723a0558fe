import { checkTtl } from '../locking/lock-options.check.js';
import type { SessionLock } from '../locking/session-locker.interface.js';
import { LOCK_SCRIPTS } from './redis-lock.scripts.js';
import type { LuaScript } from './lua-script.js';

/** Redis names used for one lock key. */
export interface LockKeys {
  readonly key: string;
  readonly lock: string;
  readonly fence: string;
  readonly queue: string;
  readonly lease: string;
  readonly channel: string;
  /** PUBLISH, or SPUBLISH on a cluster. */
  readonly publish: string;
}

/** The names of `key`'s lock under `prefix`; the `{key}` hash tag keeps them in one slot. */
export function lockKeysOf(prefix: string, key: string, cluster: boolean): LockKeys {
  const lock = `${prefix}lock:{${key}}`;
  return {
    key,
    lock,
    fence: `${lock}:fence`,
    queue: `${lock}:queue`,
    lease: `${lock}:lease`,
    channel: `${lock}:released`,
    publish: cluster ? 'SPUBLISH' : 'PUBLISH',
  };
}

/**
 * The tombstone of a token whose acquisition was abandoned: while it exists, an ACQUIRE of that
 * token reaching Redis late takes nothing. Same `{key}` hash tag as the lock.
 */
export function tombstoneOf(keys: LockKeys, token: string): string {
  return `${keys.lock}:abandoned:${token}`;
}

/** Runs a locker script; Redis errors become `StoreUnavailableException` naming `operation`. */
export type ScriptRunner = (operation: string, script: LuaScript, keys: string[], args: string[]) => Promise<unknown>;

/** A lock held in Redis, identified by its random token. */
export class RedisLock implements SessionLock {
  constructor(
    private readonly run: ScriptRunner,
    private readonly keys: LockKeys,
    readonly token: string,
    readonly fence: number,
    /** Taken by the ACQUIRE that `acquire()` sent before returning (see `SessionLock.immediate`). */
    readonly immediate = false,
  ) {}

  get key(): string {
    return this.keys.key;
  }

  async release(): Promise<boolean> {
    const { lock, queue, lease, channel, publish } = this.keys;
    const reply = await this.run('release lock', LOCK_SCRIPTS.release, [lock, queue, lease], [this.token, channel, publish]);
    return Number(reply) === 1;
  }

  async extend(ttl: number): Promise<boolean> {
    const ms = checkTtl(ttl);
    const reply = await this.run('extend lock', LOCK_SCRIPTS.extend, [this.keys.lock], [this.token, String(ms)]);
    return Number(reply) === 1;
  }
}
