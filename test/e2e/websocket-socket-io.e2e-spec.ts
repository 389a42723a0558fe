import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { io, type Socket } from 'socket.io-client';
import { SessionManager, SessionSocketRegistry } from 'nest-session';
import { createRedisSessionStores } from 'nest-session/redis';
import { createSampleApp, type HttpAdapterName } from '../../sample-app/app.factory.js';
import { Browser } from '../support/http.js';
import { connectTestRedis, TEST_REDIS_URL, uniquePrefix, type TestRedisClient } from '../support/redis.js';
import { connectSocketIo, listenLocally, serverDisconnect, sleep } from '../support/web-sockets.js';

/** The sample app's socket.io gateway (`/socket.io`, events `whoami`, `put`, `increment`) on both adapters. */
describe.each<HttpAdapterName>(['express', 'fastify'])('socket.io gateway on %s', (adapter) => {
  let app: INestApplication;
  let url: string;
  const sockets: Socket[] = [];
  const connect = async (cookie?: string): Promise<Socket> => {
    const socket = await connectSocketIo(url, cookie);
    sockets.push(socket);
    return socket;
  };

  beforeAll(async () => {
    app = await createSampleApp(adapter);
    url = await listenLocally(app);
  });
  afterEach(() => {
    for (const socket of sockets.splice(0)) socket.disconnect();
  });
  afterAll(async () => {
    await app.close();
  });

  it('acknowledges whoami with the session named by the handshake cookie', async () => {
    const browser = new Browser(app);
    await browser.put('/session/data/color', { value: 'blue' });
    await browser.post('/auth/login', { user: 'ada' });
    const socket = await connect(browser.cookie);
    expect(await socket.emitWithAck('whoami')).toEqual({ started: true, data: { color: 'blue' }, user: 'ada' });
  });

  it('answers started: false to a socket without a cookie, and to one with an unknown id', async () => {
    expect(await (await connect()).emitWithAck('whoami')).toEqual({ started: false, data: {}, user: null });
    const unknown = await connect('A'.repeat(32));
    expect(await unknown.emitWithAck('whoami')).toEqual({ started: false, data: {}, user: null });
  });

  it('commits a message write before its acknowledgement, seen by HTTP, and sees HTTP writes', async () => {
    const browser = new Browser(app);
    await browser.put('/session/data/a', { value: 1 });
    const socket = await connect(browser.cookie);
    expect(await socket.emitWithAck('put', { key: 'b', value: { nested: [2] } })).toEqual({ key: 'b', value: { nested: [2] } });
    const seen = await browser.get('/session');
    expect(seen.body.data).toEqual({ a: 1, b: { nested: [2] } });
    expect(seen.headers['set-cookie']).toBeUndefined(); // same session, same id

    await browser.put('/session/data/c', { value: 3 });
    expect((await socket.emitWithAck('whoami')).data).toEqual({ a: 1, b: { nested: [2] }, c: 3 });
  });

  it('holds the session lock per message (@SessionLock): increments over the socket and HTTP lose none', async () => {
    const browser = new Browser(app);
    await browser.put('/session/data/seed', { value: true });
    const socket = await connect(browser.cookie);
    await Promise.all([
      ...Array.from({ length: 10 }, () => socket.emitWithAck('increment', 'n')),
      ...Array.from({ length: 10 }, () => browser.post('/counter/n/increment-locked')),
    ]);
    expect((await browser.get('/session')).body.data.n).toBe(20);
  });

  it('reports a failing message as an exception event and keeps serving the socket', async () => {
    const socket = await connect();
    const exception = new Promise((resolve) => socket.once('exception', resolve));
    socket.emit('put', 'not an object');
    expect(await exception).toMatchObject({ status: 'error', message: 'Send {"key": "<name>", "value": ...}.' });
    expect(await socket.emitWithAck('whoami')).toEqual({ started: false, data: {}, user: null });
  });

  it('follows a session the socket itself creates (a socket has no cookie to carry it)', async () => {
    const socket = await connect();
    await socket.emitWithAck('put', { key: 'made', value: 'here' });
    expect(await socket.emitWithAck('whoami')).toEqual({ started: true, data: { made: 'here' }, user: null });
  });

  it('disconnects the socket within 2 s of a logout over HTTP', async () => {
    const browser = new Browser(app);
    await browser.post('/auth/login', { user: 'grace' });
    const socket = await connect(browser.cookie);
    expect((await socket.emitWithAck('whoami')).user).toBe('grace');
    const gone = serverDisconnect(socket, 2000);
    await browser.post('/auth/logout');
    expect(await gone).toBeLessThan(2000);
  });

  it('disconnects a socket whose id was renewed away (a login over HTTP), then one whose user is logged out everywhere', async () => {
    const browser = new Browser(app);
    await browser.put('/session/data/x', { value: 1 });
    const socket = await connect(browser.cookie);
    const renewed = serverDisconnect(socket, 2000);
    await browser.post('/auth/login', { user: 'linus' }); // new id: the socket's id is dead
    await renewed;
    const again = await connect(browser.cookie);
    expect((await again.emitWithAck('whoami')).user).toBe('linus');
    const registry = app.get(SessionSocketRegistry);
    const open = registry.size;
    const destroyed = serverDisconnect(again, 2000);
    expect(await app.get(SessionManager).destroySessionsForUser('linus')).toBe(1);
    expect(await destroyed).toBeLessThan(2000);
    expect(registry.size).toBe(open - 1);
  });
});

/** `idHeader`: a handshake that carries the id header is resolved from it (header mode), not from a cookie. */
describe.each<HttpAdapterName>(['express', 'fastify'])('socket.io gateway with idHeader on %s', (adapter) => {
  let app: INestApplication;
  let url: string;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    app = await createSampleApp(adapter, { session: { idHeader: 'x-session-id' } });
    url = await listenLocally(app);
  });
  afterAll(async () => {
    for (const socket of sockets) socket.disconnect();
    await app.close();
  });

  it('resolves the session named by the id header, and ignores the cookie when the header is sent', async () => {
    const browser = new Browser(app);
    await browser.put('/session/data/via', { value: 'header' });
    const id = browser.cookie!;
    const byHeader = io(url, {
      transports: ['websocket'],
      extraHeaders: { 'x-session-id': id },
      reconnection: false,
      forceNew: true,
    });
    sockets.push(byHeader);
    expect(await byHeader.emitWithAck('whoami')).toEqual({ started: true, data: { via: 'header' }, user: null });
    const emptyHeader = io(url, {
      transports: ['websocket'],
      extraHeaders: { 'x-session-id': '', cookie: `sid=${id}` },
      reconnection: false,
      forceNew: true,
    });
    sockets.push(emptyHeader);
    expect((await emptyHeader.emitWithAck('whoami')).started).toBe(false);
  });
});

/** Expiry and activity: sockets close when their session expires; messages keep it alive. */
describe.each<HttpAdapterName>(['express', 'fastify'])('socket.io gateway and expiry on %s', (adapter) => {
  let app: INestApplication;
  let url: string;
  let socket: Socket | undefined;

  beforeAll(async () => {
    app = await createSampleApp(adapter, { session: { inactivityTimeout: 1.5, updateGracePeriod: 0.2 } });
    url = await listenLocally(app);
  });
  afterAll(async () => {
    socket?.disconnect();
    await app.close();
  });

  it('keeps a socket whose messages keep its session active, and disconnects it within 2 s once the session expires', async () => {
    const browser = new Browser(app);
    await browser.put('/session/data/k', { value: 'v' });
    socket = await connectSocketIo(url, browser.cookie);
    // 2.4 s of messages, longer than the inactivity timeout: each one counts as activity.
    for (let i = 0; i < 8; i++) {
      expect((await socket.emitWithAck('whoami')).started).toBe(true);
      await sleep(300);
    }
    expect((await browser.get('/session')).body.started).toBe(true);
    const gone = serverDisconnect(socket, 1500 + 2000);
    expect(await gone).toBeGreaterThan(900); // not before the session could have expired
  });
});

/** Two app instances on one Redis: an admin destroy through B disconnects a socket on A. */
describe.each<[HttpAdapterName, HttpAdapterName]>([
  ['express', 'fastify'],
  ['fastify', 'express'],
])('socket.io gateway on %s, admin on a second instance (%s) on Redis', (adapterA, adapterB) => {
  const prefix = uniquePrefix('ws-multi');
  const token = 'ws-admin-token';
  let redis: TestRedisClient;
  let a: INestApplication;
  let b: INestApplication;
  let url: string;
  let socket: Socket | undefined;

  beforeAll(async () => {
    redis = await connectTestRedis();
    // Each instance its own client on the same Redis and prefix, as two processes would have.
    const instance = async (adapter: HttpAdapterName): Promise<INestApplication> => {
      const { metadataBackend, storageBackend, locker } = await createRedisSessionStores({ url: TEST_REDIS_URL, prefix });
      return createSampleApp(adapter, { session: { metadataBackend, storageBackend, locker }, adminToken: token });
    };
    [a, b] = await Promise.all([instance(adapterA), instance(adapterB)]);
    url = await listenLocally(a);
  });
  afterAll(async () => {
    socket?.disconnect();
    await Promise.all([a?.close(), b?.close()]);
    if (redis !== undefined) {
      const keys: string[] = [];
      for await (const batch of redis.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) keys.push(...batch);
      if (keys.length > 0) await redis.del(keys);
      await redis.close();
    }
  });

  it('disconnects the socket within 2 s of DELETE /admin/sessions?user=U on the other instance', async () => {
    const browser = new Browser(a);
    await browser.post('/auth/login', { user: 'mallory' });
    socket = await connectSocketIo(url, browser.cookie);
    expect((await socket.emitWithAck('whoami')).user).toBe('mallory');
    const gone = serverDisconnect(socket, 2000);
    const destroyed = await request(b.getHttpServer()).delete('/admin/sessions?user=mallory').set('x-admin-token', token);
    expect(destroyed.body).toEqual({ destroyed: 1 });
    expect(await gone).toBeLessThan(2000);
  });
});
