import { jest } from '@jest/globals';
import fc from 'fast-check';
import {
  FlashBag,
  InvalidArgumentException,
  LockException,
  SessionBagRegistry,
  SessionDestroyedException,
  SessionError,
  StoreUnavailableException,
  userTag,
  type LockOptions,
  type SessionLockHandle,
  type SessionLocker,
  type TaggableBackend,
} from 'nest-session';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { SessionManager } from '../../lib/manager/session.manager.js';
import { SessionContext } from '../../lib/session/session.context.js';
import { Session } from '../../lib/session/session.js';
import { SessionStore } from '../../lib/session/session.store.js';

/*
 * A reference model of sessions as a browser and its in-flight requests see them, and a runner
 * that drives real `Session` objects (one per request) over a real `SessionStore` in lock step
 * with it. The model holds, per session, a set of *alternative* stored states: a race whose
 * outcome the protocol leaves open (an unlocked same-key race is last-writer-wins, a renewed-away
 * request's commit may fail or land) adds alternatives; every observation (a read, a probe by
 * a fresh request) keeps only those it matches. An observation no alternative explains is a
 * violation: a lost update, a zombie, data loss, or a 409 for a legal sequence.
 */

// ---- the universe -----------------------------------------------------------------------

export const SLOTS = 4;
const KEYS = ['k0', 'k1', 'k2'] as const;
const TAGS = ['t0', 't1'] as const;
const USERS = ['u0', 'u1'] as const;
const FLASH_TYPES = ['info', 'error'] as const;
/** Seconds. */
export const TIMEOUT = 100;
/** Seconds. */
export const GRACE = 10;
/** Seconds: `absoluteTimeout`, counted from creation and restarted at login (issue 12). */
export const ABSOLUTE = 150;
/** setTTL values: above the grace period, above the default timeout, and at/below the grace period (item 8). */
const TTLS = [30, 200, 5] as const;

export type Cmd =
  | { t: 'begin'; s: number }
  | { t: 'put'; s: number; k: string }
  | { t: 'remove'; s: number; k: string }
  | { t: 'clear'; s: number }
  | { t: 'get'; s: number; k: string }
  | { t: 'getAll'; s: number }
  | { t: 'addTag'; s: number; tag: string }
  | { t: 'removeTag'; s: number; tag: string }
  | { t: 'flashAdd'; s: number; type: string }
  | { t: 'flashAll'; s: number }
  | { t: 'open'; s: number }
  | { t: 'save'; s: number }
  | { t: 'unlock'; s: number }
  | { t: 'failSave'; s: number }
  | { t: 'regenerate'; s: number; destroy: boolean }
  | { t: 'renewId'; s: number }
  | { t: 'bind'; s: number; user: string }
  | { t: 'destroy'; s: number }
  | { t: 'setTTL'; s: number; seconds: number }
  | { t: 'touch'; s: number }
  | { t: 'commit'; s: number }
  | { t: 'commitMany'; slots: number[] }
  | { t: 'time'; step: 'small' | 'grace' | 'boundary-1' | 'boundary' | 'boundary+1' }
  | { t: 'gc' }
  | { t: 'expireLock'; s: number };

/**
 * Relative weights of the operations; every one is enabled. What each covers:
 * - begin/commit: a request resumes from the browser's cookie (or starts a session) and ends (commit + dispose).
 * - put/remove/clear/get/getAll: data, read-your-writes, per-key caching of unlocked reads.
 * - addTag/removeTag: tags merged onto fresh metadata at commit.
 * - flashAdd/flashAll: the FlashBag (a mergeable bag): adds and consumption survive concurrent commits.
 * - open/save/unlock/failSave: Aerys locking, a save whose store writes all fail (503), unlock discarding.
 * - regenerate (with/without destroy), renewId, bindToUser: new ids, storage moves (items 1, 2, 3, 12).
 * - destroy, setTTL (incl. at/below the grace period, item 8), touch.
 * - commitMany: 2-4 requests commit concurrently (Promise.all); same-key writes: any order.
 * - time (boundary-1/boundary/boundary+1 ms of the expiry), gc: expiry and GC at the boundary (item 5).
 * - expireLock: the lock of a holder runs out (ttl shortened to 1 ms); fencing.
 */
export const WEIGHTS: Record<Cmd['t'], number> = {
  begin: 6,
  put: 8,
  remove: 2,
  clear: 1,
  get: 3,
  getAll: 2,
  addTag: 2,
  removeTag: 1,
  flashAdd: 2,
  flashAll: 2,
  open: 5,
  save: 2,
  unlock: 1,
  failSave: 1,
  regenerate: 2,
  renewId: 1,
  bind: 1,
  destroy: 1,
  setTTL: 1,
  touch: 1,
  commit: 6,
  commitMany: 6,
  time: 6,
  gc: 3,
  expireLock: 8,
};

export function cmdArbitrary(weights: Record<Cmd['t'], number> = WEIGHTS): fc.Arbitrary<Cmd> {
  // Most commands go to the first two requests, so that interleavings stay dense.
  const s = fc.oneof(
    { arbitrary: fc.constant(0), weight: 4 },
    { arbitrary: fc.constant(1), weight: 3 },
    fc.constant(2),
    fc.constant(3),
  );
  const k = fc.constantFrom(...KEYS);
  const arbs: Record<Cmd['t'], fc.Arbitrary<Cmd>> = {
    begin: fc.record({ t: fc.constant('begin' as const), s }),
    put: fc.record({ t: fc.constant('put' as const), s, k }),
    remove: fc.record({ t: fc.constant('remove' as const), s, k }),
    clear: fc.record({ t: fc.constant('clear' as const), s }),
    get: fc.record({ t: fc.constant('get' as const), s, k }),
    getAll: fc.record({ t: fc.constant('getAll' as const), s }),
    addTag: fc.record({ t: fc.constant('addTag' as const), s, tag: fc.constantFrom(...TAGS) }),
    removeTag: fc.record({ t: fc.constant('removeTag' as const), s, tag: fc.constantFrom(...TAGS) }),
    flashAdd: fc.record({ t: fc.constant('flashAdd' as const), s, type: fc.constantFrom(...FLASH_TYPES) }),
    flashAll: fc.record({ t: fc.constant('flashAll' as const), s }),
    open: fc.record({ t: fc.constant('open' as const), s }),
    save: fc.record({ t: fc.constant('save' as const), s }),
    unlock: fc.record({ t: fc.constant('unlock' as const), s }),
    failSave: fc.record({ t: fc.constant('failSave' as const), s }),
    regenerate: fc.record({ t: fc.constant('regenerate' as const), s, destroy: fc.boolean() }),
    renewId: fc.record({ t: fc.constant('renewId' as const), s }),
    bind: fc.record({ t: fc.constant('bind' as const), s, user: fc.constantFrom(...USERS) }),
    destroy: fc.record({ t: fc.constant('destroy' as const), s }),
    setTTL: fc.record({ t: fc.constant('setTTL' as const), s, seconds: fc.constantFrom(...TTLS) }),
    touch: fc.record({ t: fc.constant('touch' as const), s }),
    commit: fc.record({ t: fc.constant('commit' as const), s }),
    commitMany: fc.record({
      t: fc.constant('commitMany' as const),
      slots: fc.uniqueArray(s, { minLength: 2, maxLength: SLOTS }),
    }),
    time: fc.record({
      t: fc.constant('time' as const),
      // The expiry boundary steps are the interesting ones (item 5): twice as likely.
      step: fc.oneof(
        fc.constantFrom('small' as const, 'grace' as const),
        fc.constantFrom('boundary-1' as const, 'boundary' as const, 'boundary+1' as const),
        fc.constantFrom('boundary-1' as const, 'boundary' as const, 'boundary+1' as const),
      ),
    }),
    gc: fc.constant({ t: 'gc' as const }),
    expireLock: fc.record({ t: fc.constant('expireLock' as const), s }),
  };
  return fc.oneof(
    ...(Object.keys(arbs) as Array<Cmd['t']>)
      .filter((name) => weights[name] > 0)
      .map((name) => ({ arbitrary: arbs[name], weight: weights[name] })),
  );
}

// ---- the stores under test --------------------------------------------------------------

/** A locker that remembers the lock each request slot was last granted (to let it run out). */
export class TrackingLocker implements SessionLocker {
  /** Slot whose `open()` is calling `acquire` right now (it does so synchronously). */
  current: number | undefined;
  readonly bySlot = new Map<number, Promise<SessionLockHandle>>();
  constructor(readonly inner: SessionLocker) {}
  acquire(key: string, options: LockOptions): Promise<SessionLockHandle> {
    const lock = this.inner.acquire(key, options);
    if (this.current !== undefined) this.bySlot.set(this.current, lock);
    return lock;
  }
}

export interface Stores {
  metadataBackend: TaggableBackend;
  storageBackend: TaggableBackend;
  locker: SessionLocker;
}

export interface Harness {
  store: SessionStore;
  manager: SessionManager;
  tracker: TrackingLocker;
  stores: Stores;
}

export function makeHarness(stores: Stores): Harness {
  const tracker = new TrackingLocker(stores.locker);
  const bags = new SessionBagRegistry();
  bags.register(() => new FlashBag());
  // The tracker hands out the inner locker's locks, so a storage backend that checks those
  // (Redis: unlocked commits in one script) checks the tracker's: the model covers that path.
  const storageBackend = new Proxy(stores.storageBackend, {
    get(target, property) {
      if (property === 'checksLocksOf') return target.checksLocksOf === stores.locker ? tracker : target.checksLocksOf;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  const store = new SessionStore(
    resolveSessionOptions({
      metadataBackend: stores.metadataBackend,
      storageBackend,
      locker: tracker,
      inactivityTimeout: TIMEOUT,
      updateGracePeriod: GRACE,
      absoluteTimeout: ABSOLUTE,
      lock: { waitTimeout: 8000, ttl: 10_000 },
      garbageCollection: { probability: 0, cron: false, maximumPerRun: 1000 },
    }),
    bags,
  );
  return { store, manager: new SessionManager(store, new SessionContext()), tracker, stores };
}

// ---- the model --------------------------------------------------------------------------

type Flashes = Record<string, string[]>;

/** One alternative of what is stored for a session. */
interface State {
  data: Record<string, string>;
  tags: string[];
  userId: string | null;
  flashes: Flashes;
  lifetime: number | null;
  /** Last activity lies in [laLo, laHi] (ms). */
  laLo: number;
  laHi: number;
  /** The absolute lifetime counts from a moment in [startLo, startHi] (ms): creation, or the last login. */
  startLo: number;
  startHi: number;
}

interface MSession {
  name: string;
  id: string;
  alts: State[];
  dead: boolean;
  /** Storage generation: bumped when the data moves to a new storage id (regenerate(true), login). */
  gen: number;
  /** The last move may not have happened (a renewal kept after unlock/failed save). */
  genUncertain: boolean;
  /** Successful commits that wrote the storage (fencing). */
  dataWrites: number;
  lockHolder: number | undefined;
  /** A request under a renewed-away id destroyed it: either the whole session is gone or nothing is. */
  suspect: boolean;
}

interface FlashView {
  init: Map<string, string[]>;
  view: Map<string, string[]>;
  consumed: Map<string, number>;
  added: Map<string, string[]>;
  bag: FlashBag;
  /** open() re-read the data: the bag is read again on next use, this request's flash changes stay on top. */
  reinit: boolean;
}

interface Req {
  slot: number;
  session: Session;
  /** The model session it works on; undefined for a new session not stored yet. */
  m: MSession | undefined;
  /** The id it knows the session by (its cookie, or what its own commit issued). */
  knownId: string | undefined;
  gen: number;
  changes: Map<string, string | null>;
  tagAdd: Set<string>;
  tagDel: Set<string>;
  user: string | undefined;
  /** When `bindToUser(user)` was called (ms; meaningful while `user` is set). */
  boundAt: number;
  /** When the request began (ms): a session it starts is created no earlier. */
  begunAt: number;
  ttl: number | undefined;
  /** Lifetimes the request's local metadata may hold (seconds): from what it loaded or committed. */
  seenLifetimes: Set<number>;
  touched: boolean;
  metaDirty: boolean;
  renew: 'none' | 'yes' | 'maybe';
  move: 'none' | 'yes' | 'maybe';
  /** Alternatives of the stored state when it loaded all data; undefined = not loaded. */
  base: State[] | undefined;
  singles: Map<string, string | undefined>;
  flash: FlashView | undefined;
  lock: 'none' | 'held' | 'expired';
  lockWritesAt: number;
  /** A lock wait in flight (open() or an unlocked commit queued behind a holder). */
  pending: { kind: 'open' | 'commit'; promise: Promise<unknown>; m: MSession } | undefined;
  /** Reads of a request whose session went away are not checked. */
  unchecked: boolean;
  /**
   * Last activity the request's local metadata held when a queued commit started: the planner
   * decides before the commit waits for the lock, and once the waiter is served its session
   * already holds what it wrote (so the model must judge the grace period from before).
   */
  decidedFrom?: number;
}

export class ModelViolation extends Error {}

const canon = (s: State): string =>
  JSON.stringify([
    Object.entries(s.data).sort(),
    [...s.tags].sort(),
    s.userId,
    Object.entries(s.flashes)
      .filter(([, l]) => l.length > 0)
      .sort(),
    s.lifetime,
    s.laLo,
    s.laHi,
    s.startLo,
    s.startHi,
  ]);

function dedupe(states: State[]): State[] {
  const seen = new Map<string, State>();
  for (const s of states) seen.set(canon(s), s);
  return [...seen.values()];
}

const clone = <T>(v: T): T => structuredClone(v);
const ttlOf = (s: State): number => (s.lifetime ?? TIMEOUT) * 1000;
/** The earliest and the latest moment `s` can expire: the sooner of its inactivity and absolute ends. */
const expiryLo = (s: State): number => Math.min(s.laLo + ttlOf(s), s.startLo + ABSOLUTE * 1000);
const expiryHi = (s: State): number => Math.min(s.laHi + ttlOf(s), s.startHi + ABSOLUTE * 1000);
const surelyExpired = (s: State, now: number): boolean => now >= expiryHi(s);
const maybeExpired = (s: State, now: number): boolean => now >= expiryLo(s);

function cleanFlashes(f: Flashes): Flashes {
  return Object.fromEntries(Object.entries(f).filter(([, l]) => l.length > 0));
}

const sameFlashes = (a: Flashes, b: Flashes): boolean => {
  const ca = cleanFlashes(a);
  const cb = cleanFlashes(b);
  return JSON.stringify(Object.entries(ca).sort()) === JSON.stringify(Object.entries(cb).sort());
};

const sameData = (a: Record<string, string>, b: Record<string, unknown>): boolean =>
  JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());

function describeError(e: unknown): string {
  return e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e);
}

/** The runner: one instance per fast-check run. */
export class ModelRun {
  /** Executed commands by label head, over all runs (MODEL_STATS=1 prints them). */
  static readonly stats = new Map<string, number>();
  readonly trace: string[] = [];
  private readonly reqs: Array<Req | undefined> = new Array<Req | undefined>(SLOTS).fill(undefined);
  private readonly sessions: MSession[] = [];
  private readonly deadIds = new Set<string>();
  private cookie: string | undefined;
  private counter = 0;
  private sessionCounter = 0;
  private waiter: Req | undefined;

  constructor(private readonly h: Harness) {}

  private fail(message: string): never {
    throw new ModelViolation(`${message}\n  executed:\n    ${this.trace.join('\n    ')}`);
  }

  private now(): number {
    return Date.now();
  }

  private liveSessions(): MSession[] {
    return this.sessions.filter((m) => !m.dead);
  }

  // ---- the runner ---------------------------------------------------------------------

  async run(cmds: readonly Cmd[]): Promise<void> {
    try {
      for (const cmd of cmds) {
        const label = await this.step(cmd);
        if (label !== undefined) {
          const head = label.startsWith('time(')
            ? label.replace(/\).*$/, ')')
            : label.replace(/\(.*$/, '') + (/\[(queued|waits)/.test(label) ? ' [queued]' : '');
          ModelRun.stats.set(head, (ModelRun.stats.get(head) ?? 0) + 1);
          this.trace.push(label);
          await this.checkAll();
        }
      }
      // Lock holders end first, again after each commit: a waiter served by one holder's end
      // holds the lock next, and a request committing behind it would wait for its lock.
      for (;;) {
        const open = this.reqs.filter((x): x is Req => x !== undefined && x.pending === undefined);
        const r = open.find((x) => x.lock === 'held') ?? open[0];
        if (r === undefined) break;
        this.trace.push(`commit(${r.slot}) [end of run]`);
        await this.endRequest(r);
        await this.checkAll();
      }
    } finally {
      // Never leave a lock or a waiter behind for the next run.
      for (const r of this.reqs) {
        if (r === undefined) continue;
        if (r.pending !== undefined) await r.pending.promise.catch(() => undefined);
        await r.session.dispose().catch(() => undefined);
      }
    }
  }

  /** Runs one command; answers its label, or undefined when its precondition does not hold (skipped). */
  private async step(cmd: Cmd): Promise<string | undefined> {
    if (cmd.t === 'time') return this.waiter === undefined ? this.time(cmd.step) : undefined;
    if (cmd.t === 'gc') return this.gc();
    if (cmd.t === 'commitMany') return this.commitMany(cmd.slots);
    if (cmd.t === 'begin') return this.reqs[cmd.s] === undefined ? this.begin(cmd.s) : undefined;
    if (this.reqs[cmd.s] === undefined) {
      // An operation in a slot without a request starts one there first.
      if (cmd.t === 'commit' || cmd.t === 'expireLock' || cmd.t === 'save' || cmd.t === 'unlock') return undefined;
      this.trace.push(await this.begin(cmd.s));
      await this.checkAll();
    }
    const r = this.reqs[cmd.s];
    if (r === undefined || r.pending !== undefined) return undefined;
    const label = `${cmd.t}(${cmd.s}${'k' in cmd ? `, ${cmd.k}` : ''}${'tag' in cmd ? `, ${cmd.tag}` : ''}${
      'type' in cmd ? `, ${cmd.type}` : ''
    }${'destroy' in cmd ? `, destroy=${String(cmd.destroy)}` : ''}${'user' in cmd ? `, ${cmd.user}` : ''}${
      'seconds' in cmd ? `, ${cmd.seconds}` : ''
    })`;
    switch (cmd.t) {
      case 'put':
        await this.put(r, cmd.k);
        return label;
      case 'remove':
        this.ensureStarted(r);
        await r.session.removeData(cmd.k);
        r.changes.set(cmd.k, null);
        return label;
      case 'clear':
        this.ensureStarted(r);
        await this.getAll(r);
        await r.session.clear();
        for (const key of Object.keys(this.viewData(r))) r.changes.set(key, null);
        return label;
      case 'get':
        this.ensureStarted(r);
        await this.get(r, cmd.k);
        return label;
      case 'getAll':
        this.ensureStarted(r);
        await this.getAll(r);
        return label;
      case 'addTag':
        this.ensureStarted(r);
        await r.session.addTag(cmd.tag);
        r.tagDel.delete(cmd.tag);
        r.tagAdd.add(cmd.tag);
        r.metaDirty = true;
        return label;
      case 'removeTag':
        this.ensureStarted(r);
        await r.session.removeTag(cmd.tag);
        r.tagAdd.delete(cmd.tag);
        r.tagDel.add(cmd.tag);
        r.metaDirty = true;
        return label;
      case 'flashAdd': {
        this.ensureStarted(r);
        const f = await this.flashOf(r);
        const message = `m${++this.counter}`;
        f.bag.add(cmd.type, message);
        f.view.set(cmd.type, [...(f.view.get(cmd.type) ?? []), message]);
        f.added.set(cmd.type, [...(f.added.get(cmd.type) ?? []), message]);
        return label;
      }
      case 'flashAll': {
        this.ensureStarted(r);
        const f = await this.flashOf(r);
        const got = f.bag.all() as Flashes;
        const want = Object.fromEntries(f.view);
        if (!r.unchecked && !sameFlashes(got, want)) {
          this.fail(`flashAll(${r.slot}) read ${JSON.stringify(got)}, the model has ${JSON.stringify(want)}`);
        }
        for (const [type, list] of f.view) {
          const addedHere = f.added.get(type)?.length ?? 0;
          f.added.delete(type);
          f.consumed.set(type, (f.consumed.get(type) ?? 0) + Math.max(0, list.length - addedHere));
        }
        f.view.clear();
        return label;
      }
      case 'open':
        return this.open(r, label);
      case 'save':
        return this.save(r, label, false);
      case 'failSave':
        // The injected outage hits every request: a commit queued behind this one would run
        // into it as soon as the lock is released, so none may be waiting.
        if (this.waiter !== undefined) return undefined;
        return this.save(r, label, true);
      case 'unlock':
        return this.unlock(r, label);
      case 'regenerate': {
        this.ensureStarted(r);
        const stored = !r.session.isNew();
        // regenerate(true) reads nothing now: the commit copies the entries as they are then,
        // under the old storage's lock (StorageMover.prepare), so a request that never read the
        // data has no snapshot of it.
        await r.session.regenerate(cmd.destroy);
        if (stored) {
          r.renew = 'yes';
          r.metaDirty = true;
          if (cmd.destroy) r.move = 'yes';
        }
        return label;
      }
      case 'renewId':
        this.ensureStarted(r);
        r.session.renewId();
        if (!r.session.isNew()) {
          r.renew = 'yes';
          r.metaDirty = true;
        }
        return label;
      case 'bind': {
        this.ensureStarted(r);
        const previous = r.session.getUserId();
        r.session.bindToUser(cmd.user);
        if (previous !== undefined && previous !== cmd.user) {
          r.tagAdd.delete(userTag(previous));
          r.tagDel.add(userTag(previous));
        }
        r.tagDel.delete(userTag(cmd.user));
        r.tagAdd.add(userTag(cmd.user));
        r.user = cmd.user;
        r.boundAt = this.now();
        r.metaDirty = true;
        if (!r.session.isNew()) {
          r.renew = 'yes';
          // Login moves the session to a fresh storage id (issue 11, item 12).
          r.move = 'yes';
        }
        return label;
      }
      case 'destroy':
        return this.destroy(r, label);
      case 'setTTL':
        this.ensureStarted(r);
        try {
          r.session.setTTL(cmd.seconds);
        } catch (error) {
          // Refusing a lifetime at or below the grace period is one allowed fix of item 8.
          if (cmd.seconds <= GRACE && error instanceof InvalidArgumentException) return `${label} -> refused`;
          throw error;
        }
        r.ttl = cmd.seconds;
        r.metaDirty = true;
        return label;
      case 'touch':
        this.ensureStarted(r);
        await r.session.touch();
        r.touched = true;
        return label;
      case 'commit':
        if (this.blockedBehindHolder(r)) {
          if (this.waiter !== undefined || !this.willWrite(r)) return undefined;
          const m = r.m!;
          r.decidedFrom = r.session.getLastActivityTimestamp();
          r.pending = { kind: 'commit', m, promise: this.endRequestQueued(r) };
          this.waiter = r;
          await this.letWaiterQueue();
          return `${label} [queued behind slot ${m.lockHolder!}]`;
        }
        await this.endRequest(r);
        return label;
      case 'expireLock': {
        if (r.lock !== 'held' || this.waiter !== undefined) return undefined;
        const lock = await this.h.tracker.bySlot.get(r.slot);
        if (lock === undefined) return undefined;
        await lock.extend(1);
        await new Promise((resolve) => setTimeout(resolve, 15));
        r.lock = 'expired';
        if (r.m !== undefined) {
          r.lockWritesAt = r.m.dataWrites;
          if (r.m.lockHolder === r.slot) r.m.lockHolder = undefined;
        }
        return label;
      }
    }
  }

  // ---- requests -----------------------------------------------------------------------

  private newReq(slot: number, session: Session): Req {
    return {
      slot,
      session,
      m: undefined,
      knownId: undefined,
      gen: 0,
      changes: new Map(),
      tagAdd: new Set(),
      tagDel: new Set(),
      user: undefined,
      boundAt: 0,
      begunAt: this.now(),
      ttl: undefined,
      seenLifetimes: new Set(),
      touched: false,
      metaDirty: false,
      renew: 'none',
      move: 'none',
      base: undefined,
      singles: new Map(),
      flash: undefined,
      lock: 'none',
      lockWritesAt: 0,
      pending: undefined,
      unchecked: false,
    };
  }

  private async begin(slot: number): Promise<string> {
    const cookie = this.cookie;
    const session = new Session(this.h.store, { cookieIds: cookie === undefined ? [] : [cookie], cookieName: 'sid' });
    await session.resume();
    const r = this.newReq(slot, session);
    this.reqs[slot] = r;
    const m = this.sessions.find((x) => x.id === cookie);
    if (cookie !== undefined && (this.deadIds.has(cookie) || m === undefined) && session.isStarted()) {
      this.fail(`zombie: begin(${slot}) resumed the dead id ${cookie.slice(0, 6)}`);
    }
    if (m !== undefined) {
      this.observeAlive(m, session.isStarted(), `begin(${slot})`);
      if (session.isStarted()) {
        for (const a of m.alts) r.seenLifetimes.add(a.lifetime ?? TIMEOUT);
        r.m = m;
        r.knownId = m.id;
        r.gen = m.gen;
      }
    }
    return `begin(${slot}) [cookie ${m?.name ?? 'none'}${session.isStarted() ? '' : ', no session'}]`;
  }

  /** An app starts a session before it writes to it; so does this runner. */
  private ensureStarted(r: Req): void {
    if (!r.session.isStarted()) {
      r.session.start();
      r.m = undefined;
      r.knownId = undefined;
      // A started session holds all of its (empty) data (Session.start()): it reads its own
      // copy from now on, not what other requests store later under the id it issues.
      r.base = [this.emptyState()];
      r.singles.clear();
      r.unchecked = false;
    }
  }

  private async put(r: Req, key: string): Promise<void> {
    this.ensureStarted(r);
    const value = `v${++this.counter}`;
    await r.session.putData(key, value);
    r.changes.set(key, value);
  }

  /** The stored alternatives a request reads from now. */
  private storedAlts(r: Req): State[] {
    if (r.m === undefined || r.session.isNew()) return [this.emptyState(r.begunAt)];
    return r.m.alts;
  }

  /** A session not stored yet; `startedFrom`: the earliest moment it can have been started (ms). */
  private emptyState(startedFrom?: number): State {
    const now = this.now();
    return {
      data: {},
      tags: [],
      userId: null,
      flashes: {},
      lifetime: null,
      laLo: now,
      laHi: now,
      startLo: startedFrom ?? now,
      startHi: now,
    };
  }

  private ensureLoaded(r: Req): void {
    if (r.base === undefined) {
      r.base = clone(this.storedAlts(r));
      r.singles.clear();
      if (r.m !== undefined && this.staleness(r) !== 'none') r.unchecked = true;
    }
  }

  private viewData(r: Req): Record<string, string> {
    const data = { ...(r.base?.[0]?.data ?? {}) };
    for (const [k, v] of r.changes) {
      if (k.startsWith('~')) continue;
      setOrDelete(data, k, v);
    }
    return data;
  }

  private async getAll(r: Req): Promise<void> {
    this.ensureLoaded(r);
    const got = await r.session.getAllData();
    const fits = r.base!.filter((alt) => {
      const data = { ...alt.data };
      for (const [k, v] of r.changes) {
        setOrDelete(data, k, v);
      }
      return sameData(data, got);
    });
    if (fits.length === 0 && !r.unchecked) {
      this.fail(`getAll(${r.slot}) read ${JSON.stringify(got)}; the model allows ${this.show(r.base!, r.changes)}`);
    }
    if (fits.length > 0) r.base = fits;
    else r.base = [{ ...this.emptyState(), data: Object.fromEntries(Object.entries(got).map(([k, v]) => [k, String(v)])) }];
  }

  private show(alts: State[], changes: Map<string, string | null>): string {
    return alts
      .map((alt) => {
        const data = { ...alt.data };
        for (const [k, v] of changes) {
          setOrDelete(data, k, v);
        }
        return JSON.stringify(data);
      })
      .join(' or ');
  }

  private async get(r: Req, key: string): Promise<void> {
    const got = await r.session.getData(key);
    if (r.unchecked) return;
    let allowed: Array<string | undefined>;
    if (r.changes.has(key)) allowed = [r.changes.get(key) ?? undefined];
    else if (r.base !== undefined) allowed = r.base.map((alt) => alt.data[key]);
    else if (r.singles.has(key)) allowed = [r.singles.get(key)];
    else {
      if (r.m !== undefined && this.staleness(r) !== 'none') return;
      const alts = this.storedAlts(r);
      allowed = alts.map((alt) => alt.data[key]);
      if (r.m !== undefined && !r.session.isNew()) {
        const fits = r.m.alts.filter((alt) => alt.data[key] === got);
        if (fits.length > 0) r.m.alts = fits;
      }
      r.singles.set(key, got as string | undefined);
    }
    if (!allowed.includes(got as string | undefined)) {
      this.fail(`get(${r.slot}, ${key}) read ${String(got)}; the model allows ${allowed.map(String).join(' or ')}`);
    }
    if (r.base !== undefined && !r.changes.has(key)) r.base = r.base.filter((alt) => alt.data[key] === got);
  }

  private async flashOf(r: Req): Promise<FlashView> {
    if (r.flash !== undefined && !r.flash.reinit) return r.flash;
    this.ensureLoaded(r);
    const bag = await r.session.getBag<FlashBag>('flashes');
    const seen = bag.peekAll() as Flashes;
    const before = r.flash;
    const fits = r.base!.filter((alt) =>
      sameFlashes(before === undefined ? alt.flashes : applyFlashOps(alt.flashes, before.consumed, before.added), seen),
    );
    if (fits.length === 0 && !r.unchecked) {
      this.fail(
        `flashes(${r.slot}) read ${JSON.stringify(seen)}; the model has ${r.base!.map((a) => JSON.stringify(a.flashes)).join(' or ')}`,
      );
    }
    if (fits.length > 0) r.base = fits;
    if (before !== undefined) {
      before.bag = bag;
      before.reinit = false;
      before.view = new Map(Object.entries(seen).map(([t, l]) => [t, [...l]] as [string, string[]]));
      before.init = new Map(Object.entries(r.base![0]?.flashes ?? {}).map(([t, l]) => [t, [...l]] as [string, string[]]));
      return before;
    }
    const init = new Map(Object.entries(seen).map(([t, l]) => [t, [...l]] as [string, string[]]));
    r.flash = {
      init,
      view: new Map([...init].map(([t, l]) => [t, [...l]])),
      consumed: new Map(),
      added: new Map(),
      bag,
      reinit: false,
    };
    return r.flash;
  }

  private flashChanged(r: Req): boolean {
    const f = r.flash;
    if (f === undefined) return false;
    if (f.added.size > 0 || [...f.consumed.values()].some((c) => c > 0)) return true;
    return !sameFlashes(Object.fromEntries(f.init), Object.fromEntries(f.view));
  }

  // ---- what a commit writes -----------------------------------------------------------

  /** Whether the last-activity time is rewritten: the planner's rule (TYPO3 grace period). */
  private writesMeta(r: Req): boolean | 'maybe' {
    if (r.session.isNew() || r.metaDirty || r.touched || r.move !== 'none') return true;
    // A session's grace period is at most half its lifetime (README, `updateGracePeriod`; item 8),
    // so a setTTL() at or below the grace period still rewrites last activity often enough.
    // The planner uses the lifetime of the request's local metadata; where the model cannot tell
    // which one that is (another request changed it meanwhile), both outcomes are allowed.
    const lifetimes =
      r.ttl !== undefined ? [r.ttl] : [...new Set([...(r.m?.alts ?? []).map((a) => a.lifetime ?? TIMEOUT), ...r.seenLifetimes])];
    const idle = this.now() - (r.decidedFrom ?? r.session.getLastActivityTimestamp());
    const over = lifetimes.map((lifetime) => idle >= Math.min(GRACE, lifetime / 2) * 1000);
    return over.every(Boolean) ? true : over.some(Boolean) ? 'maybe' : false;
  }

  private hasPersistentChanges(r: Req): boolean {
    return r.changes.size > 0 || this.flashChanged(r) || r.metaDirty;
  }

  /** Whether `r`'s commit certainly writes (not only 'maybe' a last-activity rewrite). */
  private surelyWrites(r: Req, willWrite: boolean): boolean {
    if (r.session.isNew()) return willWrite;
    return this.hasPersistentChanges(r) || this.writesMeta(r) === true;
  }

  private willWrite(r: Req): boolean {
    if (r.session.isNew()) {
      let tags = 0;
      for (const t of r.tagAdd) if (!r.tagDel.has(t)) tags++;
      return r.changes.size > 0 || this.flashChanged(r) || tags > 0 || r.user !== undefined;
    }
    return this.hasPersistentChanges(r) || this.writesMeta(r) !== false;
  }

  private applyTo(alt: State, r: Req, dataFrom: State, meta: boolean | 'maybe', localTags?: string[]): State {
    const now = this.now();
    const next: State = clone({ ...alt, data: dataFrom.data, flashes: dataFrom.flashes });
    for (const [k, v] of r.changes) {
      setOrDelete(next.data, k, v);
    }
    if (this.flashChanged(r)) {
      const f = r.flash!;
      next.flashes = applyFlashOps(next.flashes, f.consumed, f.added);
    }
    const tags = new Set(localTags ?? next.tags);
    if (localTags === undefined) {
      for (const t of r.tagDel) tags.delete(t);
      for (const t of r.tagAdd) tags.add(t);
    }
    next.tags = [...tags].sort();
    if (r.user !== undefined) {
      next.userId = r.user;
      // bindToUser() restarts the absolute lifetime at the time it was called.
      next.startLo = next.startHi = r.boundAt;
    }
    if (r.ttl !== undefined) next.lifetime = r.ttl;
    if (meta === true) next.laLo = next.laHi = now;
    else if (meta === 'maybe') next.laHi = now;
    return next;
  }

  /** `alt` with `r`'s data and flash changes only (a commit that writes no metadata). */
  private applyData(alt: State, r: Req): State {
    const next = clone(alt);
    for (const [k, v] of r.changes) setOrDelete(next.data, k, v);
    if (this.flashChanged(r)) next.flashes = applyFlashOps(next.flashes, r.flash!.consumed, r.flash!.added);
    return next;
  }

  /** What `r`'s commit may leave stored, from the alternatives stored now. */
  private candidates(r: Req, alts: State[]): State[] {
    const meta = this.writesMeta(r);
    const out: State[] = [];
    for (const alt of alts) {
      out.push(this.applyTo(alt, r, alt, meta));
      // A move copies the entries stored when it commits (StorageMover.prepare, under the old
      // storage's lock) and writes fresh metadata with this request's changes on top
      // (metadataToWrite), so it leaves what `alt` plus the changes hold, like any commit.
    }
    return dedupe(out);
  }

  /** Why `r` may no longer reach its session. */
  private staleness(
    r: Req,
    stored = !r.session.isNew(),
  ): 'none' | 'dead' | 'maybe-dead' | 'moved' | 'maybe-moved' | 'renewed' | 'fenced' | 'maybe-fenced' {
    const m = r.m;
    if (m === undefined || !stored) return 'none';
    const now = this.now();
    if (m.dead || m.alts.every((a) => surelyExpired(a, now))) return 'dead';
    if (m.alts.some((a) => maybeExpired(a, now))) return 'maybe-dead';
    if (r.gen !== m.gen) return m.genUncertain && r.gen === m.gen - 1 ? 'maybe-moved' : 'moved';
    if (r.knownId !== m.id) return 'renewed';
    if (r.lock === 'expired') return m.dataWrites > r.lockWritesAt ? 'fenced' : 'maybe-fenced';
    return 'none';
  }

  /** Commits `r` (`how`: an end-of-request commit, a save, or a save whose store writes all fail). */
  private async doCommit(r: Req, how: 'commit' | 'save' | 'fail', action: () => Promise<void>): Promise<void> {
    const stale = this.staleness(r);
    const willWrite = this.willWrite(r);
    const persistent = this.hasPersistentChanges(r);
    const wasNew = r.session.isNew();
    const sure = this.surelyWrites(r, willWrite);
    const m = r.m;
    const candidates = m === undefined || wasNew ? this.candidates(r, [this.emptyState(r.begunAt)]) : this.candidates(r, m.alts);
    const oldId = r.knownId;
    const wroteStorage = r.changes.size > 0 || this.flashChanged(r) || r.move !== 'none';
    let error: unknown;
    if (how === 'fail') {
      const restore = this.breakStores();
      try {
        await action();
      } catch (e) {
        error = e;
      } finally {
        restore();
      }
    } else {
      try {
        await action();
      } catch (e) {
        error = e;
      }
    }
    const what = `${how}(${r.slot})`;
    if (error !== undefined && !(error instanceof SessionError)) throw asError(error);
    if (how === 'fail') {
      if (error === undefined && sure && stale === 'none') this.fail(`${what}: a save whose store writes all fail succeeded`);
      if (error !== undefined && !(error instanceof StoreUnavailableException) && stale === 'none') {
        this.fail(`${what}: expected StoreUnavailableException, got ${describeError(error)}`);
      }
    } else if (error !== undefined) {
      if (stale === 'none') this.fail(`409 for a legal sequence: ${what} threw ${describeError(error)}`);
      if (stale === 'fenced' && !(error instanceof LockException)) {
        this.fail(`${what}: a holder whose lock expired should be fenced off, got ${describeError(error)}`);
      }
      if (!(
        error instanceof LockException ||
        error instanceof SessionDestroyedException ||
        error instanceof StoreUnavailableException
      )) {
        this.fail(`${what}: unexpected ${describeError(error)}`);
      }
    } else if (persistent && (stale === 'dead' || stale === 'moved')) {
      this.fail(
        `data loss: ${what} answered success, but its session was ${stale === 'dead' ? 'destroyed or expired' : 'moved away by a login/regenerate(true)'} so the changes went nowhere`,
      );
    } else if (stale === 'fenced' && wroteStorage) {
      this.fail(`lost update: ${what} of a holder whose lock expired succeeded after another request wrote`);
    }

    if (error === undefined && willWrite && how !== 'fail') {
      const newId = r.session.isStarted() ? r.session.getId() : undefined;
      if (m === undefined || wasNew) {
        if (newId !== undefined && !r.session.isNew()) {
          const created: MSession = {
            name: `S${++this.sessionCounter}`,
            id: newId,
            alts: candidates,
            dead: false,
            gen: 0,
            genUncertain: false,
            dataWrites: 1,
            lockHolder: undefined,
            suspect: false,
          };
          this.sessions.push(created);
          r.m = created;
          r.gen = 0;
          r.knownId = newId;
          this.cookie = newId;
        }
      } else if (stale === 'none' || stale === 'maybe-dead' || stale === 'maybe-fenced' || stale === 'maybe-moved') {
        m.alts = stale === 'maybe-moved' ? dedupe([...m.alts, ...candidates]) : candidates;
        if (wroteStorage) m.dataWrites++;
        if (newId !== undefined && newId !== oldId) {
          if (r.renew === 'none') this.fail(`${what}: the id changed without a renewal`);
          this.retire(oldId!);
          m.id = newId;
          this.cookie = newId;
          r.knownId = newId;
        } else if (r.renew === 'yes') this.fail(`${what}: a renewal did not change the id`);
        if (r.move !== 'none') {
          // A committed move holds every entry it copied (Session.movedTo): the request reads
          // that copy from now on, whatever it had loaded before.
          r.base = clone(m.alts);
          r.singles.clear();
          m.gen++;
          m.genUncertain = r.move === 'maybe';
          r.gen = m.gen;
        }
      } else if (stale === 'renewed' && persistent) {
        // A request under a renewed-away id (same storage) may land its data changes, but never
        // its metadata: its id is gone, and writing under it would revive a renewed id (DESIGN
        // section 4). A metadata change fails the commit (SessionDestroyedException); a
        // last-activity rewrite is dropped, so last activity stays as the renewal wrote it.
        m.alts = dedupe(m.alts.map((alt) => this.applyData(alt, r)));
        if (wroteStorage) m.dataWrites++;
      }
    }
    // A save whose store writes fail but that had nothing to write succeeds: nothing is
    // discarded or re-read (only a failing save reloads, Aerys). A new session that is not
    // stored yet (nothing storable, DESIGN section 4 "Lazy") keeps what is pending, e.g. a
    // setTTL(), for the commit that stores it.
    if (error === undefined) {
      if (willWrite || !wasNew) this.acknowledge(r);
    } else if (how !== 'commit') this.discard(r);
  }

  /** After a commit: what it wrote is the request's new baseline. */
  private acknowledge(r: Req): void {
    if (r.flash !== undefined && r.base !== undefined && r.m !== undefined && this.flashChanged(r)) {
      // The bag now holds what the commit wrote (merged onto what was stored, FlashBag.merge),
      // which is the flashes of the session's state after this commit.
      const after = r.m.alts;
      r.base = dedupe(r.base.flatMap((b) => after.map((a) => ({ ...clone(b), flashes: clone(a.flashes) }))));
      r.flash.reinit = true;
    }
    if (r.base !== undefined) {
      r.base = r.base.map((alt) => {
        const data = { ...alt.data };
        for (const [k, v] of r.changes) {
          setOrDelete(data, k, v);
        }
        return { ...alt, data };
      });
    } else for (const [k, v] of r.changes) r.singles.set(k, v ?? undefined);
    r.changes.clear();
    r.tagAdd.clear();
    r.tagDel.clear();
    r.user = undefined;
    if (r.ttl !== undefined) r.seenLifetimes.add(r.ttl);
    r.ttl = undefined;
    r.touched = false;
    r.metaDirty = false;
    r.renew = 'none';
    r.move = 'none';
    if (r.flash !== undefined) {
      const f = r.flash;
      f.init = new Map([...f.view].map(([t, l]) => [t, [...l]]));
      f.consumed.clear();
      f.added.clear();
    }
  }

  /** Aerys: unlock() or a failed save() discards the pending changes and re-reads. */
  private discard(r: Req): void {
    r.changes.clear();
    r.tagAdd.clear();
    r.tagDel.clear();
    r.user = undefined;
    r.ttl = undefined;
    r.touched = false;
    r.flash = undefined;
    if (r.renew === 'yes') r.renew = 'maybe';
    if (r.move === 'yes') r.move = 'maybe';
    r.metaDirty = r.renew !== 'none';
    r.base = r.session.isStarted() ? clone(this.storedAlts(r)) : undefined;
    for (const a of r.base ?? []) r.seenLifetimes.add(a.lifetime ?? TIMEOUT);
    r.singles.clear();
    if (!r.session.isStarted()) r.m = undefined;
  }

  private retire(id: string): void {
    this.deadIds.add(id);
  }

  private breakStores(): () => void {
    const broken = new Error('connection lost (injected)');
    const patched: Array<() => void> = [];
    for (const backend of [this.h.stores.metadataBackend, this.h.stores.storageBackend]) {
      const b = backend as unknown as Record<string, unknown>;
      for (const name of ['write', 'set', 'remove', 'flushByTag']) {
        const own = Object.prototype.hasOwnProperty.call(b, name);
        const original = b[name];
        b[name] = () => Promise.reject(broken);
        patched.push(() => {
          if (own) b[name] = original;
          else Reflect.deleteProperty(b, name);
        });
      }
    }
    return () => {
      for (const restore of patched) restore();
    };
  }

  // ---- locks --------------------------------------------------------------------------

  private blockedBehindHolder(r: Req): boolean {
    const m = r.m;
    if (m === undefined || r.session.isNew() || r.lock !== 'none') return false;
    return m.lockHolder !== undefined && m.lockHolder !== r.slot && this.reqs[m.lockHolder]?.gen === r.gen;
  }

  /** Redis queues a waiter in a few round trips: let it get in line before the holder releases. */
  private async letWaiterQueue(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 25));
  }

  private async open(r: Req, label: string): Promise<string | undefined> {
    if (r.lock !== 'none') return undefined;
    this.ensureStarted(r);
    if (this.blockedBehindHolder(r)) {
      if (this.waiter !== undefined) return undefined;
      const m = r.m!;
      this.h.tracker.current = r.slot;
      const promise = r.session.open().then(
        () => undefined,
        (e: unknown) => e,
      );
      this.h.tracker.current = undefined;
      r.pending = { kind: 'open', m, promise };
      this.waiter = r;
      await this.letWaiterQueue();
      return `${label} [waits for slot ${m.lockHolder!}]`;
    }
    const stale = this.staleness(r);
    this.h.tracker.current = r.slot;
    const opening = r.session.open();
    this.h.tracker.current = undefined;
    const error = await opening.then(
      () => undefined,
      (e: unknown) => e,
    );
    this.afterOpen(r, error, stale, label);
    return label;
  }

  private afterOpen(r: Req, error: unknown, stale: ReturnType<ModelRun['staleness']>, label: string): void {
    if (error !== undefined) {
      if (stale === 'none') this.fail(`409 for a legal sequence: ${label} threw ${describeError(error)}`);
      if (!(error instanceof SessionError)) throw asError(error);
      if (!r.session.isStarted()) {
        r.m = undefined;
        this.discard(r);
      }
      return;
    }
    r.lock = 'held';
    if (r.m !== undefined && !r.session.isNew()) {
      r.m.lockHolder = r.slot;
      for (const a of r.m.alts) r.seenLifetimes.add(a.lifetime ?? TIMEOUT);
      // open() re-reads everything under the lock; bags are read again on next use.
      r.base = clone(r.m.alts);
      r.singles.clear();
      if (r.flash !== undefined) r.flash.reinit = true;
    }
  }

  private releaseLockOf(r: Req): void {
    if (r.m !== undefined && r.m.lockHolder === r.slot) r.m.lockHolder = undefined;
    r.lock = 'none';
  }

  /** The holder let go: the one queued waiter (if any) gets the lock; settle it. */
  private async serveWaiter(): Promise<void> {
    const w = this.waiter;
    if (w === undefined) return;
    const holder = w.pending!.m.lockHolder;
    if (holder !== undefined && this.reqs[holder]?.lock === 'held') return;
    this.waiter = undefined;
    const pending = w.pending!;
    if (pending.kind === 'open') {
      // The open() settled while the holder let go; one that found its session gone has reset
      // it already (isNew), so the staleness is the stored session's (only those queue).
      const stale = this.staleness(w, true);
      const error = await pending.promise;
      w.pending = undefined;
      this.trace.push(`  (slot ${w.slot} got the lock)`);
      this.afterOpen(w, error, stale, `open(${w.slot})`);
    } else {
      this.trace.push(`  (slot ${w.slot} got the lock and commits)`);
      await this.doCommit(w, 'commit', async () => {
        const error = await pending.promise;
        if (error !== undefined) throw asError(error);
      });
      w.pending = undefined;
      this.reqs[w.slot] = undefined;
    }
  }

  private async save(r: Req, label: string, failing: boolean): Promise<string | undefined> {
    if (this.blockedBehindHolder(r)) return undefined;
    await this.doCommit(r, failing ? 'fail' : 'save', () => r.session.save());
    this.releaseLockOf(r);
    await this.serveWaiter();
    return label;
  }

  private async unlock(r: Req, label: string): Promise<string> {
    await r.session.unlock();
    this.releaseLockOf(r);
    this.discard(r);
    await this.serveWaiter();
    return label;
  }

  private async destroy(r: Req, label: string): Promise<string | undefined> {
    this.ensureStarted(r);
    if (this.blockedBehindHolder(r)) return undefined;
    const m = r.m;
    const stale = this.staleness(r);
    const stored = !r.session.isNew();
    try {
      await r.session.destroy();
    } catch (error) {
      if (stale === 'none') this.fail(`409 for a legal sequence: ${label} threw ${describeError(error)}`);
      if (!(error instanceof SessionError)) throw asError(error);
      if (stale === 'fenced' && error instanceof LockException && r.session.isStarted()) {
        // A holder whose lock expired and was overtaken is refused (nothing is removed); the
        // request goes on with its session and its changes, without the lock.
        this.releaseLockOf(r);
        await this.serveWaiter();
        return `${label} -> LockException`;
      }
    }
    if (stale === 'fenced' && m !== undefined && stored && !r.session.isStarted() && !m.dead) {
      // Destroying succeeded although a later holder wrote: it flushed that holder's writes.
      this.fail(`lost update: ${label} of a holder whose lock expired succeeded after another request wrote`);
    }
    this.releaseLockOf(r);
    if (m !== undefined && stored) {
      if (stale === 'none' || stale === 'maybe-dead' || stale === 'maybe-fenced') this.kill(m);
      else if (stale === 'renewed' || stale === 'maybe-moved' || stale === 'moved') m.suspect = true;
      if (r.knownId !== undefined) this.retire(r.knownId);
    }
    r.m = undefined;
    this.discard(r);
    await this.serveWaiter();
    return label;
  }

  private kill(m: MSession): void {
    m.dead = true;
    this.retire(m.id);
    if (this.cookie === m.id) this.cookie = undefined;
  }

  private async endRequest(r: Req): Promise<void> {
    await this.doCommit(r, 'commit', async () => {
      try {
        await r.session.commit();
      } finally {
        await r.session.dispose();
      }
    });
    this.releaseLockOf(r);
    this.reqs[r.slot] = undefined;
    await this.serveWaiter();
  }

  /** A queued end-of-request commit: it runs now (and waits for the lock); the model settles it when the holder lets go. */
  private endRequestQueued(r: Req): Promise<unknown> {
    const run = async (): Promise<void> => {
      try {
        await r.session.commit();
      } finally {
        await r.session.dispose();
      }
    };
    return run().then(
      () => undefined,
      (e: unknown) => e,
    );
  }

  private async commitMany(slots: readonly number[]): Promise<string | undefined> {
    if (this.waiter !== undefined) return undefined;
    // The slots whose requests can take part (others are left alone); at least two. Each commit
    // takes the short commit lock, so bag merges and metadata merges serialize in some order:
    // flash and lifetime changes are modelled by the permutations below. Renewals and moves
    // are left out (their outcome depends on which renewal lands first, see doCommit).
    const reqs = slots
      .map((s) => this.reqs[s])
      .filter(
        (r): r is Req =>
          r !== undefined &&
          r.pending === undefined &&
          r.lock === 'none' &&
          r.session.isStarted() &&
          !r.session.isNew() &&
          r.m !== undefined &&
          r.m.lockHolder === undefined &&
          this.staleness(r) === 'none' &&
          r.renew === 'none' &&
          r.move === 'none' &&
          r.user === undefined,
      );
    if (reqs.length < 2) return undefined;
    // Every order in which the commits may serialize.
    const byM = new Map<MSession, Req[]>();
    for (const r of reqs) byM.set(r.m!, [...(byM.get(r.m!) ?? []), r]);
    const next = new Map<MSession, State[]>();
    // Only a commit that writes data moves the storage guard's fence on (as in doCommit's
    // `wroteStorage`): commits that write nothing at all take no lock and touch no guard, so a
    // holder whose lock expired meanwhile is not overtaken by them (its commit may still land).
    const wrote = new Set<MSession>();
    for (const r of reqs) if (r.changes.size > 0 || this.flashChanged(r)) wrote.add(r.m!);
    for (const [m, group] of byM) {
      let out: State[] = [];
      for (const order of permutations(group)) {
        let alts = m.alts;
        for (const r of order) alts = this.candidates(r, alts);
        out = out.concat(alts);
      }
      next.set(m, dedupe(out));
    }
    const results = await Promise.allSettled(
      reqs.map(async (r) => {
        try {
          await r.session.commit();
        } finally {
          await r.session.dispose();
        }
      }),
    );
    results.forEach((result, i) => {
      if (result.status === 'rejected') {
        this.fail(`409 for a legal sequence: concurrent commit of slot ${reqs[i]!.slot} threw ${describeError(result.reason)}`);
      }
    });
    for (const [m, alts] of next) {
      m.alts = alts;
      if (wrote.has(m)) m.dataWrites++;
    }
    for (const r of reqs) this.reqs[r.slot] = undefined;
    return `commitMany(${reqs.map((r) => r.slot).join(', ')})`;
  }

  // ---- time and GC --------------------------------------------------------------------

  private time(step: 'small' | 'grace' | 'boundary-1' | 'boundary' | 'boundary+1'): string | undefined {
    const now = this.now();
    let target: number;
    if (step === 'small') target = now + 1000;
    else if (step === 'grace') target = now + GRACE * 1000 + 1;
    else {
      const m = this.liveSessions().find((x) => !x.alts.every((a) => surelyExpired(a, now)));
      if (m === undefined) return undefined;
      const alt = m.alts[0]!;
      target = step === 'boundary-1' ? expiryLo(alt) - 1 : expiryHi(alt) + (step === 'boundary' ? 0 : 1);
      if (target <= now) return undefined;
    }
    jest.setSystemTime(target);
    for (const m of this.liveSessions()) if (m.alts.every((a) => surelyExpired(a, target))) this.kill(m);
    return `time(${step}) -> +${target - now} ms`;
  }

  private async gc(): Promise<string> {
    const removed = await this.h.manager.collectGarbage();
    const now = this.now();
    for (const m of this.liveSessions()) if (m.alts.every((a) => surelyExpired(a, now))) this.kill(m);
    return `gc() [${removed} removed]`;
  }

  // ---- observation --------------------------------------------------------------------

  /** Refines a session by whether a request could resume it now. */
  private observeAlive(m: MSession, alive: boolean, where: string): void {
    const now = this.now();
    if (alive) {
      if (m.dead) this.fail(`zombie: ${where} resumed ${m.name}, which is ${m.suspect ? 'half-destroyed' : 'dead'}`);
      const fits = m.alts.filter((a) => !surelyExpired(a, now));
      if (fits.length === 0) this.fail(`zombie: ${where} resumed ${m.name} after it expired`);
      m.alts = fits;
    } else {
      if (m.dead) return;
      const fits = m.alts.filter((a) => maybeExpired(a, now));
      if (fits.length === 0 && !m.suspect) {
        this.fail(`data loss: ${where} found no session ${m.name}, which is live (expires at +${expiryLo(m.alts[0]!) - now} ms)`);
      }
      this.kill(m);
    }
  }

  /** A fresh request reads every live session and every dead id. */
  private async checkAll(): Promise<void> {
    for (const m of this.sessions) {
      if (m.dead && this.deadIds.has(m.id)) continue;
      await this.probe(m);
    }
    for (const id of this.deadIds) {
      const session = new Session(this.h.store, { cookieIds: [id], cookieName: 'sid' });
      await session.resume();
      if (session.isStarted()) {
        const owner = this.sessions.find((m) => m.id === id);
        if (owner === undefined || owner.dead) this.fail(`zombie: the dead id ${id.slice(0, 6)} resumes again`);
      }
    }
  }

  private async probe(m: MSession): Promise<void> {
    const session = new Session(this.h.store, { cookieIds: [m.id], cookieName: 'sid' });
    await session.resume();
    this.observeAlive(m, session.isStarted(), `a fresh request for ${m.name}`);
    if (!session.isStarted()) return;
    const data = await session.getAllData();
    const tags = session.getTags().sort();
    const userId = session.getUserId() ?? null;
    const la = session.getLastActivityTimestamp();
    const flashes = (await session.getBag<FlashBag>('flashes')).peekAll() as Flashes;
    const fits = m.alts.filter(
      (a) =>
        sameData(a.data, data) &&
        JSON.stringify(a.tags) === JSON.stringify(tags) &&
        a.userId === userId &&
        sameFlashes(a.flashes, flashes) &&
        la >= a.laLo &&
        la <= a.laHi,
    );
    if (fits.length === 0) {
      const seen = JSON.stringify({ data, tags: tags.map(short), userId, flashes, la: la - this.now() });
      const want = m.alts
        .map((a) =>
          JSON.stringify({
            data: a.data,
            tags: a.tags.map(short),
            userId: a.userId,
            flashes: a.flashes,
            la: [a.laLo - this.now(), a.laHi - this.now()],
          }),
        )
        .join('\n      or ');
      this.fail(`a fresh request for ${m.name} read\n      ${seen}\n    the model allows\n      ${want}`);
    }
    m.alts = fits.map((a) => ({ ...a, laLo: la, laHi: la }));
  }
}

function setOrDelete(data: Record<string, string>, key: string, value: string | null): void {
  if (value === null) Reflect.deleteProperty(data, key);
  else data[key] = value;
}

const asError = (e: unknown): Error => (e instanceof Error ? e : new Error(String(e)));

function applyFlashOps(flashes: Flashes, consumed: Map<string, number>, added: Map<string, string[]>): Flashes {
  const merged = new Map(Object.entries(flashes).map(([t, l]) => [t, [...l]] as [string, string[]]));
  for (const [type, count] of consumed) merged.get(type)?.splice(0, count);
  for (const [type, messages] of added) merged.set(type, [...(merged.get(type) ?? []), ...messages]);
  return cleanFlashes(Object.fromEntries(merged));
}

const short = (tag: string): string => (tag.startsWith('user-') ? `user-${tag.slice(5, 9)}` : tag);

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]));
}
