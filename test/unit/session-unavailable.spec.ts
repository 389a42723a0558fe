import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { SessionNotStartedException, StoreUnavailableException } from 'nest-session';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { SessionHttpHandler } from '../../lib/http/session-http.handler.js';
import { CurrentSessionProxy } from '../../lib/session/current-session.proxy.js';
import { Session } from '../../lib/session/session.js';
import { SessionContext } from '../../lib/session/session.context.js';
import { SessionStore } from '../../lib/session/session.store.js';

/**
 * Issue 11, "lazy resume": a resume that fails because the store is down leaves the request's
 * session unavailable instead of failing the request (see SessionHttpHandler).
 */
describe('a session whose resume found the store unavailable', () => {
  afterEach(() => {
    jest.restoreAllMocks();
  });

  function setUp(failure?: unknown) {
    const store = new SessionStore(resolveSessionOptions({}));
    const id = store.options.idGenerator.generate();
    const error = failure ?? StoreUnavailableException.create('redis get', new Error(`connection lost reading sess:${id}`));
    // A store read asynchronously (Redis, PostgreSQL): the memory backends' synchronous path is off.
    jest.spyOn(store, 'readsSync', 'get').mockReturnValue(false);
    jest.spyOn(store, 'loadMetadata').mockRejectedValue(error);
    // The resume reads the entry as stored too (a later commit may require it unchanged).
    jest.spyOn(store, 'loadMetadataEntry').mockRejectedValue(error);
    const write = jest.spyOn(store, 'write');
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const handler = new SessionHttpHandler(store, new SessionContext());
    const begin = () =>
      handler.begin({ cookieHeader: `${store.options.cookie.name}=${id}`, ip: '127.0.0.1' }) as Promise<Session>;
    return { store, id, error, write, warn, handler, begin };
  }

  it('a store that reads synchronously (memory) and fails: the same, answered at once', () => {
    const store = new SessionStore(resolveSessionOptions({}));
    const id = store.options.idGenerator.generate();
    const error = StoreUnavailableException.create('memory get', new Error(`broken reading sess:${id}`));
    jest.spyOn(store, 'loadMetadataEntrySync').mockImplementation(() => {
      throw error;
    });
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const handler = new SessionHttpHandler(store, new SessionContext());
    const session = handler.begin({ cookieHeader: `${store.options.cookie.name}=${id}`, ip: '127.0.0.1' });
    expect(session).toBeInstanceOf(Session);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]?.[0])).not.toContain(id);
    expect(() => (session as Session).isStarted()).toThrow(error);
  });

  it('does not fail the request; logs the failure once, without the id', async () => {
    const { id, begin, warn } = setUp();
    const session = await begin();
    expect(session).toBeInstanceOf(Session);
    expect(warn).toHaveBeenCalledTimes(1);
    const logged = String(warn.mock.calls[0]?.[0]);
    expect(logged).toMatch(/session store is unavailable/);
    expect(logged).not.toContain(id);
  });

  it('commits nothing and sends no cookie when the handler never used it', async () => {
    const { begin, handler, write } = setUp();
    const session = await begin();
    expect(session.isIdle()).toBe(true);
    expect(session.getCookieFacts()).toMatchObject({ id: undefined, idIssued: false, destroyed: false });
    expect(handler.finishIfIdle(session)).toBe(true);
    expect(await handler.finish(session, false)).toBeUndefined();
    expect(write).not.toHaveBeenCalled();
  });

  /** Public methods that need neither the session's state nor the store (no-ops or local settings). */
  const stillAnswering = new Set([
    'isRemote',
    'getName',
    'setName',
    'getLockState',
    'registerBag',
    'close',
    'save',
    'read',
    'unlock',
  ]);
  const args: Record<string, unknown[]> = {
    getData: ['k'],
    hasKey: ['k'],
    putData: ['k', 1],
    removeData: ['k'],
    addTag: ['t'],
    removeTag: ['t'],
    setTTL: [60],
    bindToUser: ['u'],
    setPermanent: [true],
    getBag: ['attributes'],
  };
  // Every method of SessionInterface (CurrentSessionProxy forwards exactly those): a method
  // added later must be listed above or throw the store's error.
  const methods = Object.getOwnPropertyNames(CurrentSessionProxy.prototype).filter(
    (name) => name !== 'constructor' && !stillAnswering.has(name),
  );

  it.each(methods)('%s() throws the store error (code that uses the session answers 503)', async (name) => {
    const { begin, error } = setUp();
    const session = await begin();
    const method = (session as unknown as Record<string, (...a: unknown[]) => unknown>)[name]!;
    const outcome = await (async () => method.apply(session, args[name] ?? []))().then(
      () => 'answered',
      (thrown: unknown) => thrown,
    );
    expect(outcome).toBe(error);
  });

  it.each([...stillAnswering].filter((name) => name !== 'registerBag'))('%s() still answers', async (name) => {
    const { begin } = setUp();
    const session = await begin();
    const method = (session as unknown as Record<string, (...a: unknown[]) => unknown>)[name]!;
    await expect((async () => method.apply(session, name === 'setName' ? ['other'] : []))()).resolves.not.toThrow();
  });

  it('any other resume failure still fails the request', async () => {
    const other = SessionNotStartedException.create('something else');
    const { begin } = setUp(other);
    await expect(begin()).rejects.toBe(other);
  });
});
