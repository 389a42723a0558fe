import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { filter, map } from 'rxjs';
import {
  AttributeBag,
  FlashBag,
  InvalidArgumentException,
  MemoryBackend,
  SessionLimitExceededException,
  SessionNotStartedException,
  StoreUnavailableException,
  type SessionAttributes,
  type SessionEvent,
  type SessionModuleOptions,
} from 'nest-session';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { Session } from '../../lib/session/session.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { SessionContext } from '../../lib/session/session.context.js';
import { SessionHttpHandler } from '../../lib/http/session-http.handler.js';
import { SessionBagRegistry } from '../../lib/bags/session-bag.registry.js';
import { metadataKeyOf } from '../../lib/session/session-key.js';
import { UNKNOWN_ADDRESS_LOCK } from '../../lib/session/ip-lock.js';
import { checkedWrite } from '../../lib/cache/backend-arguments.js';
import { serializeSessionCookie } from '../../lib/http/session-cookie.js';
import { readSessionIdHeader } from '../../lib/http/session-id-header.js';
import { created, resumed } from '../support/session-requests.js';

function makeStore(options: SessionModuleOptions = {}): SessionStore {
  return new SessionStore(resolveSessionOptions({ lock: { waitTimeout: 200, ttl: 2000 }, ...options }));
}

function request(store: SessionStore, clientIp?: string, ids: string[] = []): Session {
  return new Session(store, { cookieIds: ids, cookieName: 'sid', clientIp });
}

/** A new session from `clientIp` that writes a key and logs in as `user`; answers its id after the commit. */
async function newLogin(store: SessionStore, clientIp: string | undefined, user: string): Promise<string> {
  const login = request(store, clientIp);
  login.start();
  await login.putData('k' as never, 1);
  login.bindToUser(user);
  await login.commit();
  return login.getId();
}

async function storageIdOf(store: SessionStore, id: string): Promise<string> {
  return (await store.loadMetadata(metadataKeyOf(id)))!.storageId;
}

afterEach(() => {
  jest.restoreAllMocks();
});

describe('reserved names', () => {
  const reserved = ['__proto__', 'constructor', 'prototype'];

  it.each(reserved)('refuses %s as a key (put, get, remove, attribute bag) and as a tag', async (name) => {
    const session = request(makeStore());
    session.start();
    await expect(session.putData(name as never, { isAdmin: true })).rejects.toBeInstanceOf(InvalidArgumentException);
    await expect(session.getData(name as never)).rejects.toBeInstanceOf(InvalidArgumentException);
    await expect(session.removeData(name)).rejects.toBeInstanceOf(InvalidArgumentException);
    const attributes = await session.getBag<SessionAttributes>('attributes');
    expect(() => attributes.set(name, { isAdmin: true })).toThrow(InvalidArgumentException);
    await expect(session.addTag(name)).rejects.toBeInstanceOf(InvalidArgumentException);
    expect(attributes.all()['isAdmin']).toBeUndefined();
    expect(Object.getPrototypeOf(attributes.all())).toBeNull();
  });

  it.each(reserved)('refuses %s as a bag name and as a flash type', (name) => {
    const session = request(makeStore());
    expect(() => session.registerBag(new AttributeBag(name))).toThrow(InvalidArgumentException);
    expect(() => new SessionBagRegistry().register(() => new AttributeBag(name, 'fine'))).toThrow(InvalidArgumentException);
    const flashes = new FlashBag();
    expect(() => flashes.add(name, 'x')).toThrow(InvalidArgumentException);
    expect(() => flashes.set(name, 'x')).toThrow(InvalidArgumentException);
  });

  it('builds every object from session data without a prototype, even for a __proto__ entry already in the store', async () => {
    const store = makeStore();
    const id = await created(store, { plain: 1 });
    // An entry named __proto__ written by an older version (it can no longer be written through the API).
    const storageId = await storageIdOf(store, id);
    await store.storageCache.backend.set(`${storageId}.__proto__`, store.storageCache.encode({ isAdmin: true }), [storageId]);
    const session = await resumed(store, id);
    const all = await session.getAllData();
    expect(Object.getPrototypeOf(all)).toBeNull();
    expect((all as Record<string, unknown>)['isAdmin']).toBeUndefined();
    const attributes = (await session.getBag<SessionAttributes>('attributes')).all();
    expect(Object.getPrototypeOf(attributes)).toBeNull();
    expect(attributes['isAdmin']).toBeUndefined();
    expect(attributes['plain']).toBe(1);

    const bag = new AttributeBag('group');
    bag.initialize(JSON.parse('{"__proto__": {"isAdmin": true}, "a": 1}'));
    expect(Object.getPrototypeOf(bag.all())).toBeNull();
    expect(bag.all()['isAdmin']).toBeUndefined();
    const flashes = new FlashBag();
    flashes.initialize(JSON.parse('{"__proto__": ["x"], "info": ["y"]}'));
    expect(Object.getPrototypeOf(flashes.peekAll())).toBeNull();
    expect(flashes.peekAll()['info']).toEqual(['y']);
  });
});

describe('size and count limits (checked above the backend)', () => {
  it('refuses a value larger than maxEntryBytes at putData time, whatever the backend allows, and stores nothing', async () => {
    const storageBackend = new MemoryBackend({ maxEntryBytes: Infinity });
    const store = makeStore({ maxEntryBytes: 1000, storageBackend });
    const session = request(store);
    session.start();
    const error = await session.putData('big' as never, 'x'.repeat(2000) as never).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SessionLimitExceededException);
    expect((error as SessionLimitExceededException).getStatus()).toBe(413);
    expect((error as Error).message).toContain('"big"');
    expect((error as Error).message).toContain('maxEntryBytes (1000)');
    // Bytes, not characters: 400 three-byte characters are 1200 bytes.
    await expect(session.putData('euro' as never, '€'.repeat(400) as never)).rejects.toBeInstanceOf(
      SessionLimitExceededException,
    );
    await session.putData('small' as never, 'x'.repeat(900));
    await session.commit();
    expect(await resumed(store, session.getId()).then((s) => s.getAllData())).toEqual({ small: 'x'.repeat(900) });
  });

  it('refuses a bag whose data grew beyond maxEntryBytes at commit, naming no storage id', async () => {
    const store = makeStore({ maxEntryBytes: 500, storageBackend: new MemoryBackend({ maxEntryBytes: Infinity }) });
    const session = request(store);
    session.start();
    session.registerBag(new FlashBag());
    const flashes = await session.getBag<FlashBag>('flashes');
    flashes.add('info', 'y'.repeat(600));
    const error = await session.commit().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SessionLimitExceededException);
  });

  it('a backend limit below the session one answers 413 with a body that names no entry', async () => {
    const store = makeStore({ storageBackend: new MemoryBackend({ maxEntryBytes: 100 }) });
    const session = request(store);
    session.start();
    await session.putData('k' as never, 'z'.repeat(200));
    const error = (await session.commit().catch((e: unknown) => e)) as SessionLimitExceededException;
    expect(error).toBeInstanceOf(SessionLimitExceededException);
    expect(error.getStatus()).toBe(413);
    expect(error.message).toContain('.k"'); // the log gets the entry (storage id and key)
    expect(JSON.stringify(error.getResponse())).not.toContain('.k');
    expect(error.publicMessage).toBe('A session value is too large to store.');
  });

  it('caps the keys of a session (maxKeysPerSession), counting stored keys in a later request', async () => {
    const store = makeStore({ maxKeysPerSession: 3 });
    const id = await created(store, { a: 1, b: 2, c: 3 });
    // Without the data loaded the backend counts the keys in its write (no read): the commit is refused.
    const blind = await resumed(store, id);
    await blind.putData('d' as never, 4);
    const refused = await blind.commit().catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(SessionLimitExceededException);
    expect((refused as Error).message).toContain('maxKeysPerSession (3)');
    expect(await (await resumed(store, id)).getAllData()).toEqual({ a: 1, b: 2, c: 3 });
    // With the data loaded the refusal comes at once.
    const later = await resumed(store, id);
    await later.getAllData();
    await later.putData('a' as never, 10); // overwriting a key needs no room
    const error = await later.putData('d' as never, 4).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SessionLimitExceededException);
    expect((error as Error).message).toContain('maxKeysPerSession (3)');
    await later.removeData('b');
    await later.putData('d' as never, 4); // room again
    const attributes = await later.getBag<SessionAttributes>('attributes');
    expect(() => attributes.set('e', 5)).toThrow(SessionLimitExceededException);
    // Bags are not data keys: a session at its key limit still gets flashes.
    later.registerBag(new FlashBag());
    (await later.getBag<FlashBag>('flashes')).add('info', 'ok');
    await later.commit();
    expect(await (await resumed(store, id)).getAllData()).toEqual({ a: 10, c: 3, d: 4 });
  });

  it('caps the custom tags of a session (maxTagsPerSession); the user tag does not count', async () => {
    const session = request(makeStore({ maxTagsPerSession: 2 }));
    session.start();
    await session.addTag('one');
    await session.addTag('two');
    await session.addTag('two'); // already there
    await expect(session.addTag('three')).rejects.toBeInstanceOf(SessionLimitExceededException);
    session.bindToUser('alice');
    await session.removeTag('one');
    await session.addTag('three');
    expect(session.getTags()).toHaveLength(3);
  });
});

describe('client-facing error messages', () => {
  const originalEnv = process.env.NODE_ENV;
  afterEach(() => {
    process.env.NODE_ENV = originalEnv;
  });

  it('sweep: no answer names a storage id, a session id, an address or a driver error', async () => {
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    const store = makeStore({ maxEntryBytes: 50, storageBackend: new MemoryBackend({ maxEntryBytes: Infinity }) });
    const id = await created(store, { a: 1 });
    const storageId = await storageIdOf(store, id);
    const secrets = [id, storageId, metadataKeyOf(id), '10.1.2.3', 'ECONNREFUSED'];
    const errors: unknown[] = [];
    const collect = async (work: () => unknown): Promise<void> => {
      try {
        await work();
      } catch (error) {
        errors.push(error);
      }
    };
    const session = await resumed(store, id);
    await collect(() => session.putData('big' as never, 'x'.repeat(100)));
    await collect(() => session.putData('__proto__' as never, 1));
    await collect(() => session.addTag('bad tag'));
    // The argument checks every backend makes (the memory backend trusts the session layer).
    await collect(() => checkedWrite({ id: `${storageId}.bad key`, data: 'x' }));
    await collect(() => checkedWrite({ id: `${storageId}.k`, data: 'x', tags: [`storage-${storageId} x`] }));
    await collect(() => store.storageCache.backend.set(`${storageId}.k`, 'x', [], -1));
    await collect(() => store.storageCache.backend.write({ sets: [{ id: `${storageId}.k`, data: 1 as unknown as string }] }));
    await collect(() => new MemoryBackend({ maxEntryBytes: 1 }).set(`${storageId}.k`, 'xx'));
    await collect(() => request(store).getId());
    await collect(() => {
      throw StoreUnavailableException.create(`redis get sess:${storageId}`, new Error('connect ECONNREFUSED 10.1.2.3:6379'));
    });
    await collect(() => {
      throw StoreUnavailableException.atBoot('connect to redis://10.1.2.3:6379', new Error('connect ECONNREFUSED 10.1.2.3:6379'));
    });
    expect(errors).toHaveLength(11);
    const handler = new SessionHttpHandler(store, new SessionContext());
    for (const error of errors) {
      const answer = handler.answerFor(error);
      expect(answer.status).toBeGreaterThanOrEqual(400);
      for (const secret of secrets) expect(answer.body).not.toContain(secret);
    }
    // Cache-layer refusals are the session layer's bugs, not bad input: 500.
    expect(handler.answerFor(errors[3]).status).toBe(500);
    expect(handler.answerFor(errors[0]).status).toBe(413);
    expect(handler.answerFor(errors[1]).status).toBe(400);
  });

  it('answers API misuse (500) with a generic body in production and logs the details once', () => {
    const error = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    process.env.NODE_ENV = 'production';
    const misuse = SessionNotStartedException.create('get the session id');
    expect(misuse.getResponse()).toEqual({ statusCode: 500, error: 'Internal Server Error', message: 'Internal server error' });
    expect(misuse.message).toContain('Call session.start() first');
    misuse.getResponse();
    expect(error).toHaveBeenCalledTimes(1);
    expect(String(error.mock.calls[0]![0])).toContain('Call session.start() first');
    // In development the body says how to fix the code.
    process.env.NODE_ENV = 'development';
    expect(JSON.stringify(SessionNotStartedException.create('get the session id').getResponse())).toContain('session.start()');
    // Not misuse: bad input keeps its message in production.
    process.env.NODE_ENV = 'production';
    expect(new InvalidArgumentException('Invalid session key "a b"').getResponse()).toMatchObject({
      statusCode: 400,
      message: 'Invalid session key "a b"',
    });
  });
});

describe('events$', () => {
  it('isolates a subscriber that throws: the others and the request go on, the error is logged', async () => {
    const logged = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    const store = makeStore();
    const seen: SessionEvent[] = [];
    const piped: SessionEvent[] = [];
    store.events.events$.subscribe(() => {
      throw new Error('subscriber bug');
    });
    store.events.events$.pipe(filter((e) => e.type === 'started')).subscribe({
      next: (e) => {
        piped.push(e);
        throw new Error('piped subscriber bug');
      },
    });
    store.events.events$.subscribe((e) => seen.push(e));
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    process.on('uncaughtException', onUncaught);
    try {
      const session = request(store);
      session.start();
      await session.putData('a' as never, 1);
      await session.commit(); // the request is not failed
      const handle = session.getHandle();
      session.bindToUser('bob');
      await session.commit();
      await new Promise((resolve) => setTimeout(resolve, 20)); // rxjs would report async
      expect(seen.map((e) => e.type)).toEqual(['started', 'renewed', 'userBound']);
      expect(piped).toHaveLength(1);
      expect(seen[0]).toMatchObject({ type: 'started', handle });
      // Events carry handles, never ids.
      expect(JSON.stringify(seen)).not.toContain(session.getId());
      expect(logged.mock.calls.filter(([m]) => String(m).includes('subscriber bug'))).toHaveLength(4);
      expect(uncaught).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });
  it('isolates an async subscriber whose promise rejects, and an operator of a pipe that throws', async () => {
    const logged = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    const store = makeStore();
    const seen: string[] = [];
    const guarded: unknown[] = [];
    // What an app writes to forward events to a store that can fail (an audit table, a queue).
    // eslint-disable-next-line @typescript-eslint/no-misused-promises
    store.events.events$.subscribe(async () => {
      await Promise.resolve();
      throw new Error('async subscriber bug');
    });
    store.events.events$
      .pipe(
        map((): string => {
          throw new Error('operator bug');
        }),
      )
      .subscribe(() => seen.push('unreachable'));
    // A subscriber with an error callback of its own gets the operator's error there.
    store.events.events$
      .pipe(
        map((): string => {
          throw new Error('guarded operator bug');
        }),
      )
      .subscribe({ next: () => seen.push('unreachable'), error: (e: unknown) => guarded.push(e) });
    store.events.events$.subscribe((e) => seen.push(e.type));
    const session = request(store);
    session.start();
    await session.putData('a' as never, 1);
    await session.commit();
    session.bindToUser('carol');
    await session.commit();
    await new Promise((resolve) => setTimeout(resolve, 20)); // an unhandled rejection or rxjs' rethrow would come by now
    expect(seen).toEqual(['started', 'renewed', 'userBound']);
    const messages = logged.mock.calls.map(([m]) => String(m));
    expect(messages.filter((m) => m.includes('async subscriber bug'))).toHaveLength(3);
    // The operator's error ends that subscription (rxjs semantics): logged once, not per event.
    expect(messages.filter((m) => m.includes('operator bug') && !m.includes('guarded'))).toHaveLength(1);
    expect(guarded).toHaveLength(1);
    expect(messages.some((m) => m.includes('guarded operator bug'))).toBe(false);
  });
});

describe('IP lock fails closed', () => {
  const lock = { ipLock: { ipv4Prefix: 4 } } as const;

  it('a session started without a client address is locked to no address, not stored unlocked', async () => {
    const store = makeStore(lock);
    const session = request(store, undefined);
    session.start();
    await session.putData('k' as never, 1);
    await session.commit();
    const id = session.getId();
    expect((await store.loadMetadata(metadataKeyOf(id)))!.ipLock).toBe(UNKNOWN_ADDRESS_LOCK);
    for (const ip of [undefined, '203.0.113.7', 'not an address']) {
      const other = request(store, ip, [id]);
      await other.resume();
      expect(other.isStarted()).toBe(false);
    }
  });

  it.each([
    ['unknown', undefined],
    ['malformed', 'not an address'],
  ])('a login (bindToUser) from a client whose address is %s stores the session locked to no address', async (_kind, ip) => {
    const store = makeStore(lock);
    const id = await newLogin(store, ip, 'alice');
    const stored = (await store.loadMetadata(metadataKeyOf(id)))!;
    expect(stored.userId).toBe('alice'); // the login itself was stored...
    expect(stored.ipLock).toBe(UNKNOWN_ADDRESS_LOCK); // ...locked, not unlocked
    // No request can resume it, whatever its address: the client gets a new session.
    for (const address of [undefined, 'not an address', '203.0.113.7', '::ffff:203.0.113.7', '2001:db8::1']) {
      const next = request(store, address, [id]);
      await next.resume();
      expect(next.isStarted()).toBe(false);
      expect(next.getUserId()).toBeUndefined();
    }
  });

  it('a login without a client address locks a session that was stored unlocked (before the lock was on)', async () => {
    const metadataBackend = new MemoryBackend();
    const storageBackend = new MemoryBackend();
    const id = await created(makeStore({ metadataBackend, storageBackend }), { k: 1 });
    const store = makeStore({ ...lock, metadataBackend, storageBackend });
    expect((await store.loadMetadata(metadataKeyOf(id)))!.ipLock).toBeUndefined();
    const login = request(store, undefined, [id]);
    await login.resume();
    expect(login.isStarted()).toBe(true); // no lock value stored yet: it may be resumed once
    login.bindToUser('bob');
    await login.commit();
    const bound = login.getId();
    expect(bound).not.toBe(id); // a login renews the id
    expect((await store.loadMetadata(metadataKeyOf(bound)))!.ipLock).toBe(UNKNOWN_ADDRESS_LOCK);
    for (const address of [undefined, '198.51.100.1']) {
      const next = request(store, address, [bound]);
      await next.resume();
      expect(next.isStarted()).toBe(false);
    }
  });

  it('a lock with both prefixes 0 locks nothing: a client with an unknown address keeps its session', async () => {
    const store = makeStore({ ipLock: { ipv4Prefix: 0, ipv6Prefix: 0 } });
    const id = await newLogin(store, undefined, 'dana');
    expect((await store.loadMetadata(metadataKeyOf(id)))!.ipLock).toBeUndefined();
    for (const ip of [undefined, 'not an address', '203.0.113.7', '2001:db8::1']) {
      const next = request(store, ip, [id]);
      await next.resume();
      expect(next.isStarted()).toBe(true);
      expect(await next.getData('k' as never)).toBe(1);
    }
  });

  it('a lock with only the IPv6 prefix 0 still fails closed for an unknown address', async () => {
    const store = makeStore({ ipLock: { ipv4Prefix: 3, ipv6Prefix: 0 } });
    const session = request(store, undefined);
    session.start();
    await session.putData('k' as never, 1);
    await session.commit();
    expect((await store.loadMetadata(metadataKeyOf(session.getId())))!.ipLock).toBe(UNKNOWN_ADDRESS_LOCK);
  });

  it('a session stored before the lock was enabled is locked to the client of its next request', async () => {
    const metadataBackend = new MemoryBackend();
    const storageBackend = new MemoryBackend();
    const before = makeStore({ metadataBackend, storageBackend });
    const first = request(before, '198.51.100.1');
    first.start();
    await first.putData('k' as never, 'v');
    await first.commit();
    const id = first.getId();
    expect((await before.loadMetadata(metadataKeyOf(id)))!.ipLock).toBeUndefined();

    const after = makeStore({ ...lock, metadataBackend, storageBackend });
    const next = request(after, '198.51.100.1', [id]);
    await next.resume();
    expect(next.isStarted()).toBe(true);
    await next.commit();
    expect((await after.loadMetadata(metadataKeyOf(id)))!.ipLock).toBe('4:198.51.100.1');
    const thief = request(after, '203.0.113.9', [id]);
    await thief.resume();
    expect(thief.isStarted()).toBe(false);
    const owner = request(after, '198.51.100.1', [id]);
    await owner.resume();
    expect(await owner.getData('k' as never)).toBe('v');
  });
});

describe('cookie prefixes and the id header, below the adapters', () => {
  const options = resolveSessionOptions({ cookie: { domain: 'example.com', path: '/app', secure: 'auto' } }).cookie;

  it('a __Host- name set at run time still gets Secure, Path=/ and no Domain; __Secure- gets Secure', () => {
    const host = serializeSessionCookie(options, '__Host-x', 'id', undefined, false);
    expect(host).toContain('Path=/;');
    expect(host).not.toContain('Domain=');
    expect(host).toContain('; Secure');
    const secure = serializeSessionCookie(options, '__Secure-x', 'id', undefined, false);
    expect(secure).toContain('Domain=example.com');
    expect(secure).toContain('; Secure');
    expect(serializeSessionCookie(options, 'sid', 'id', undefined, false)).not.toContain('Secure');
  });

  it('reads ids from the header: absent = cookie mode, empty = header mode without an id, bad values dropped', () => {
    const valid = (id: string) => /^[a-z]{3}$/.test(id);
    expect(readSessionIdHeader(undefined, valid)).toBeUndefined();
    expect(readSessionIdHeader('', valid)).toEqual([]);
    expect(readSessionIdHeader('abc', valid)).toEqual(['abc']);
    expect(readSessionIdHeader(['abc', 'x!y'], valid)).toEqual(['abc']);
    expect(readSessionIdHeader('abc, def, ghi, jkl, mno', valid)).toEqual(['abc', 'def', 'ghi', 'jkl']);
  });
});
