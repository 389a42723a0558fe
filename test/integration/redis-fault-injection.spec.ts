import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { SessionError } from '../../lib/errors/session.error.js';
import { SessionManager } from '../../lib/manager/session.manager.js';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { createRedisSessionStores, type RedisSessionStores } from '../../lib/redis/redis-session.factory.js';
import type { RedisLockerClient } from '../../lib/redis/redis.locker.js';
import { SessionContext } from '../../lib/session/session.context.js';
import { Session } from '../../lib/session/session.js';
import { metadataKeyOf } from '../../lib/session/session-key.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { fakeOnlyDate } from '../support/fake-date.js';
import { tapCommands } from '../support/redis-command-tap.js';
import { connectTestRedis, TEST_REDIS_URL, uniquePrefix, type TestRedisClient, deleteKeysMatching } from '../support/redis.js';

/*
 * Issue 11, fault injection: the connection dies between any two commands of commit, renew,
 * login, regenerate, destroy and GC. The injector sits in front of one real node-redis client
 * (the backends' and the locker's commands all pass it, in the order they are sent) and, armed at
 * command k, either fails k and everything after it unsent ("cut": the connection died before k)
 * or lets k run in Redis and loses its reply ("lost reply": it died after k ran). Each operation
 * is run for every k until it gets through untouched; after every run, with the connection
 * healed, the store must hold: the session in its state before or after the operation (never a
 * mix), at most one of its ids valid, every key with a native TTL within its lifetime plus the
 * margin, and no lock without a TTL of at most lock.ttl. A surviving session must still work.
 */

type Mode = 'cut' | 'lost reply';

/** JSON with sorted keys: states compare whatever order their keys were stored in. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([x], [y]) => x.localeCompare(y)))
      : v,
  );
}

class FaultInjector {
  private sent = 0;
  private armedAt = -1;
  private mode: Mode = 'cut';
  /** Whether the last armed run reached its fault. */
  tripped = false;

  arm(at: number, mode: Mode): void {
    this.sent = 0;
    this.armedAt = at;
    this.mode = mode;
    this.tripped = false;
  }

  heal(): void {
    this.armedAt = -1;
  }

  /** `client` with sendCommand, evalSha and eval passing the injector; Pub/Sub (duplicate) is untouched. */
  wrap(client: RedisLockerClient): RedisLockerClient {
    const gate = (send: () => Promise<unknown>): Promise<unknown> => {
      const index = this.sent++;
      if (this.armedAt < 0 || index < this.armedAt) return send();
      this.tripped = true;
      const lost = new Error('Socket closed unexpectedly (fault injection)');
      if (index === this.armedAt && this.mode === 'lost reply') {
        return send().then(
          () => Promise.reject(lost),
          () => Promise.reject(lost),
        );
      }
      return Promise.reject(lost);
    };
    return tapCommands(client, gate);
  }
}

const LIFETIME = 60; // seconds
const MARGIN = 30; // safetyTtlMargin, seconds
const LOCK_TTL = 250; // ms
/** GC's own lock (SessionManager): 60 s. */
const GC_LOCK_TTL = 60_000;

describe('Redis fault injection: the connection dies between any two commands', () => {
  jest.setTimeout(120_000);
  const prefix = uniquePrefix('fault');
  const injector = new FaultInjector();
  let raw: TestRedisClient;
  let stores: RedisSessionStores<RedisLockerClient>;
  let store: SessionStore;
  let manager: SessionManager;

  beforeAll(async () => {
    raw = await connectTestRedis(TEST_REDIS_URL);
    const client = injector.wrap(raw);
    stores = await createRedisSessionStores({ client, prefix, safetyTtlMargin: MARGIN, commandTimeout: 0 });
    const { metadataBackend, storageBackend, locker } = stores;
    store = new SessionStore(
      resolveSessionOptions({
        metadataBackend,
        storageBackend,
        locker,
        inactivityTimeout: LIFETIME,
        updateGracePeriod: 0,
        lock: { waitTimeout: LOCK_TTL * 3, ttl: LOCK_TTL },
        garbageCollection: { probability: 0, cron: false },
      }),
    );
    manager = new SessionManager(store, new SessionContext());
  });

  afterAll(async () => {
    injector.heal();
    await deleteKeysMatching(raw, `${prefix}*`);
    await stores.close();
    await raw.close();
  });

  const request = (ids: string[]): Session => new Session(store, { cookieIds: ids, cookieName: 'sid' });

  /** The state a client holding `id` finds: undefined when the id is not valid. */
  async function stateOf(id: string): Promise<{ data: Record<string, unknown>; user: string | undefined } | undefined> {
    const session = request([id]);
    await session.resume();
    if (!session.isStarted()) return undefined;
    return { data: await session.getAllData(), user: session.getUserId() };
  }

  async function newSession(data: Record<string, unknown>, user?: string): Promise<string> {
    const session = request([]);
    session.start();
    for (const [key, value] of Object.entries(data)) await session.putData(key, value);
    if (user !== undefined) session.bindToUser(user);
    await session.commit();
    return session.getId();
  }

  async function wipe(): Promise<void> {
    await deleteKeysMatching(raw, `${prefix}*`);
  }

  /** Every key of this suite lives natively no longer than a session plus the margin; locks no longer than lock.ttl. */
  async function assertLifetimes(): Promise<void> {
    const keys: string[] = [];
    for await (const batch of raw.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) keys.push(...batch);
    for (const key of keys) {
      const pttl = await raw.pTTL(key);
      if (pttl === -2) continue; // expired meanwhile
      const what = `${key.slice(prefix.length).replace(/[A-Za-z0-9_-]{16,}/g, '…')} (PTTL ${pttl})`;
      if (key.startsWith(`${prefix}l:`)) {
        // A lock, or its queue/lease: gone within lock.ttl. Fence counters and tombstones have TTLs of their own.
        if (/:fence$/.test(key)) expect({ what, hasTtl: pttl > 0 }).toEqual({ what, hasTtl: true });
        // Tombstones of abandoned acquisitions live twice their lock's TTL.
        else if (key.includes(':abandoned:'))
          expect({ what, ok: pttl > 0 && pttl <= 2 * GC_LOCK_TTL }).toEqual({ what, ok: true });
        else {
          const ttl = key.includes('{~gc}') ? GC_LOCK_TTL : LOCK_TTL;
          expect({ what, ok: pttl >= 0 && pttl <= ttl }).toEqual({ what, ok: true });
        }
      } else if (key.startsWith(`${prefix}s:`)) {
        expect({ what, ok: pttl > 0 && pttl <= (LIFETIME + MARGIN) * 1000 + 1000 }).toEqual({ what, ok: true });
      }
    }
  }

  /** A session that survived must still take a write and read it back (no zombie answering 409). */
  async function assertUsable(id: string): Promise<void> {
    const session = request([id]);
    await session.resume();
    await session.putData('probe', 1);
    await session.commit();
    expect((await stateOf(session.getId()))?.data.probe).toBe(1);
  }

  interface Outcome {
    /** Ids whose validity is checked: at most one may be valid. */
    readonly ids: string[];
    /** Allowed states of the valid id (before, after); none valid is allowed when `loggedOutAllowed`. */
    readonly allowed: ({ data: Record<string, unknown>; user: string | undefined } | undefined)[];
  }

  /**
   * Runs `operation` (given a fresh stored session's id) armed at k = 0, 1, ... until it gets
   * through untouched, in both modes, and checks the store after each run.
   */
  async function everyFault(name: string, operation: (id: string) => Promise<Outcome>): Promise<number> {
    let runs = 0;
    for (const mode of ['cut', 'lost reply'] as const) {
      for (let k = 0; k < 60; k++) {
        const id = await newSession({ a: 1, b: 2 }, 'alice');
        injector.arm(k, mode);
        let outcome: Outcome | undefined;
        let failure: unknown;
        try {
          outcome = await operation(id);
        } catch (error) {
          failure = error;
        }
        injector.heal();
        runs++;
        // Fire-and-forget releases settle; nothing must depend on them.
        await new Promise((resolve) => setTimeout(resolve, 20));
        if (failure !== undefined && !(failure instanceof SessionError)) throw failure as Error;
        const ids = outcome?.ids ?? [id];
        const valid: string[] = [];
        for (const candidate of new Set([id, ...ids])) {
          const state = await stateOf(candidate);
          if (state === undefined) continue;
          valid.push(candidate);
          const allowed = outcome?.allowed ?? [{ data: { a: 1, b: 2 }, user: 'alice' }];
          expect({
            name,
            mode,
            k,
            candidate: candidate === id ? 'old id' : 'new id',
            state: allowed.some((a) => canonical(a) === canonical(state)) ? 'allowed' : state,
          }).toEqual({
            name,
            mode,
            k,
            candidate: candidate === id ? 'old id' : 'new id',
            state: 'allowed',
          });
        }
        expect({ name, mode, k, valid: valid.length <= 1 }).toEqual({ name, mode, k, valid: true });
        await assertLifetimes();
        if (valid[0] !== undefined) await assertUsable(valid[0]);
        await wipe(); // each run starts from an empty store (and checks stay O(one session))
        if (!injector.tripped) break; // the operation got through untouched: every k was covered
      }
    }
    return runs;
  }

  const before = { data: { a: 1, b: 2 }, user: 'alice' };

  /** Whether `work` succeeded; a store failure (typed) answers false, anything else is rethrown. */
  async function succeeds(work: Promise<unknown>): Promise<boolean> {
    try {
      await work;
      return true;
    } catch (error) {
      if (error instanceof SessionError) return false;
      throw error;
    }
  }

  /** The storage id of a session this suite just stored (read from its metadata). */
  async function storageOf(session: Session): Promise<string> {
    return (await store.loadMetadata(metadataKeyOf(session.getId())))!.storageId;
  }

  it('commit of a changed key (unlocked: one script)', async () => {
    const runs = await everyFault('commit', async (id) => {
      const s = request([id]);
      await s.resume();
      await s.putData('c', 3);
      const after = { data: { a: 1, b: 2, c: 3 }, user: 'alice' };
      return (await succeeds(s.commit())) ? { ids: [id], allowed: [after] } : { ids: [id], allowed: [before, after] };
    });
    expect(runs).toBeGreaterThan(2);
  });

  it('commit under a held lock (open, write, save)', async () => {
    await everyFault('locked commit', async (id) => {
      const s = request([id]);
      await s.resume();
      const after = { data: { a: 1, b: 2, c: 3 }, user: 'alice' };
      if (!(await succeeds(s.open()))) return { ids: [id], allowed: [before] };
      await s.putData('c', 3);
      return (await succeeds(s.save())) ? { ids: [id], allowed: [after] } : { ids: [id], allowed: [before, after] };
    });
  });

  it('id renewal with a data change', async () => {
    await everyFault('renew', async (id) => {
      const s = request([id]);
      await s.resume();
      const renewed = s.renewId();
      await s.putData('c', 3);
      const after = { data: { a: 1, b: 2, c: 3 }, user: 'alice' };
      if (await succeeds(s.commit())) return { ids: [id, renewed], allowed: [after] };
      return { ids: [id, renewed], allowed: [before, after] };
    });
  });

  it('login (bindToUser: a new id and a new storage id)', async () => {
    await everyFault('login', async (id) => {
      const s = request([id]);
      await s.resume();
      s.bindToUser('bob');
      const after = { data: { a: 1, b: 2 }, user: 'bob' };
      if (await succeeds(s.commit())) return { ids: [id, s.getId()], allowed: [after] };
      return { ids: [id, s.getId()], allowed: [before, after] };
    });
  });

  it('regenerate(true) under the lock (data moved to a new storage id)', async () => {
    await everyFault('regenerate', async (id) => {
      const s = request([id]);
      await s.resume();
      if (!(await succeeds(s.open()))) return { ids: [id], allowed: [before] };
      await s.regenerate(true);
      await succeeds(s.save());
      return { ids: [id, s.getId()], allowed: [before] };
    });
  });

  it('destroy', async () => {
    await everyFault('destroy', async (id) => {
      const s = request([id]);
      await s.resume();
      // A failed destroy may leave the session as it was; a successful one leaves nothing.
      return (await succeeds(s.destroy())) ? { ids: [id], allowed: [] } : { ids: [id], allowed: [before] };
    });
  });

  it('garbage collection of an expired session never removes a live one, and a later run finishes the job', async () => {
    fakeOnlyDate();
    for (const mode of ['cut', 'lost reply'] as const) {
      for (let k = 0; k < 80; k++) {
        const live = await newSession({ keep: true }, 'carol');
        const doomed = request([]);
        doomed.start();
        await doomed.putData('x', 1);
        doomed.setTTL(1);
        await doomed.commit();
        const doomedStorage = await storageOf(doomed);
        jest.setSystemTime(Date.now() + 1500); // the doomed session expires (Date only: timers stay real)
        injector.arm(k, mode);
        await manager.collectGarbage().catch((error: unknown) => {
          if (!(error instanceof SessionError)) throw error;
        });
        injector.heal();
        const tripped = injector.tripped;
        expect(await stateOf(doomed.getId())).toBeUndefined();
        expect(await stateOf(live)).toEqual({ data: { keep: true }, user: 'carol' });
        await assertLifetimes();
        // A GC lock left behind would block GC for its TTL: stand in for its expiry.
        await raw.del(`${prefix}l:lock:{~gc}`);
        // Healthy again: the next run removes what is left of the doomed session, and only that.
        await manager.collectGarbage();
        expect(await stores.storageBackend.findIdentifiersByTag(doomedStorage)).toEqual([]);
        expect(await stateOf(live)).toEqual({ data: { keep: true }, user: 'carol' });
        await wipe();
        if (!tripped) break;
      }
    }
    jest.useRealTimers();
  });
});
