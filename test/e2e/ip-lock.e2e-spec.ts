import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import type { Response } from 'supertest';
import { createSampleApp, type HttpAdapterName } from '../../sample-app/app.factory.js';
import { setCookies } from '../support/http.js';
import { createTestSessionStores, onEveryBackend, type TestSessionStores } from '../support/session-backends.js';
import { metadataKeyOf } from '../../lib/session/session-key.js';
import { UNKNOWN_ADDRESS_LOCK } from '../../lib/session/ip-lock.js';
import { connectTestRedis, deleteKeysMatching, TEST_REDIS_URL, uniquePrefix, type TestRedisClient } from '../support/redis.js';

/**
 * The IP lock (`ipLock`) over HTTP, on both adapters and on memory and Redis: a session is
 * bound to a prefix of the client address at login, and from another prefix it is no session.
 * The sample app trusts the loopback proxy (`TRUST_PROXY=loopback`), so each request names its
 * client address in X-Forwarded-For, as a TLS-terminating proxy in front of the app would.
 */
const LOCK = { ipv4Prefix: 3, ipv6Prefix: 4 } as const;

/** One client holding one cookie, which it may send from any address. */
class Client {
  cookie: string | undefined;
  constructor(private readonly app: INestApplication) {}

  async send(method: 'get' | 'put' | 'post', path: string, from: string, body?: unknown): Promise<Response> {
    let req = request(this.app.getHttpServer())[method](path).set('X-Forwarded-For', from);
    if (this.cookie !== undefined) req = req.set('Cookie', `sid=${this.cookie}`);
    const res = await (body === undefined ? req : req.send(body as object));
    const cookie = setCookies(res).get('sid');
    if (cookie !== undefined) this.cookie = cookie.attributes['max-age'] === '0' ? undefined : cookie.value;
    return res;
  }

  /** A copy of this client's cookie in another client (a stolen cookie). */
  stolen(): Client {
    const thief = new Client(this.app);
    thief.cookie = this.cookie;
    return thief;
  }
}

describe.each(onEveryBackend<HttpAdapterName>(['express', 'fastify']))('the IP lock on %s with %s', (adapter, backend) => {
  let app: INestApplication;
  let stores: TestSessionStores;

  beforeAll(async () => {
    stores = await createTestSessionStores(backend);
    const { metadataBackend, storageBackend, locker } = stores;
    app = await createSampleApp(adapter, {
      session: { metadataBackend, storageBackend, ...(locker === undefined ? {} : { locker }), ipLock: LOCK },
      trustProxy: 'loopback',
    });
  });
  afterAll(async () => {
    await app.close();
  });

  /** A client that stored data from `from`, then logged in as `user` from there. */
  async function loggedIn(user: string, from: string): Promise<Client> {
    const client = new Client(app);
    expect((await client.send('put', '/session/data/secret', from, { value: `${user}'s` })).status).toBe(200);
    expect((await client.send('post', '/auth/login', from, { user })).status).toBe(200);
    expect(client.cookie).toBeDefined();
    return client;
  }

  it('IPv4: the same /24 (ipv4Prefix 3) resumes the session; another prefix gets no session and cannot touch it', async () => {
    const owner = await loggedIn('alice', '198.51.100.7');
    const id = owner.cookie!;
    expect(JSON.parse((await stores.metadataBackend.get(metadataKeyOf(id)))!).ipLock).toBe('4:198.51.100');

    const sameNetwork = await owner.send('get', '/session', '198.51.100.200');
    expect(sameNetwork.body).toMatchObject({ started: true, user: 'alice', data: { secret: "alice's" } });

    const thief = owner.stolen();
    const read = await thief.send('get', '/session', '198.51.101.7');
    expect(read.status).toBe(200);
    expect(read.body).toEqual({ started: false, data: {}, tags: [], user: null });
    expect((await thief.send('get', '/account/sessions', '198.51.101.7')).status).toBe(401); // not logged in there
    // A write from there starts a session of its own: a new id, the owner's session untouched.
    const write = await thief.send('put', '/session/data/secret', '203.0.113.9', { value: 'overwritten' });
    expect(write.status).toBe(200);
    expect(thief.cookie).toBeDefined();
    expect(thief.cookie).not.toBe(id);
    expect((await thief.send('get', '/session', '203.0.113.9')).body).toMatchObject({ started: true, user: null });

    const after = await owner.send('get', '/session', '198.51.100.7');
    expect(after.body).toMatchObject({ started: true, user: 'alice', data: { secret: "alice's" } });
    expect(owner.cookie).toBe(id);
  });

  it('IPv6: the same /64 resumes the session, another /64 and an IPv4 address do not', async () => {
    const owner = await loggedIn('bob', '2001:db8:1:2::1');
    expect((await owner.send('get', '/session', '2001:db8:1:2:aaaa:bbbb:cccc:dddd')).body).toMatchObject({
      started: true,
      user: 'bob',
    });
    for (const elsewhere of ['2001:db8:1:3::1', '198.51.100.7']) {
      expect((await owner.stolen().send('get', '/session', elsewhere)).body.started).toBe(false);
    }
    expect((await owner.send('get', '/session', '2001:db8:1:2::1')).body).toMatchObject({ started: true, user: 'bob' });
  });

  it('a login from another prefix does not pick up an anonymous session locked elsewhere: it gets a new one', async () => {
    const client = new Client(app);
    await client.send('put', '/session/data/cart', '203.0.113.1', { value: ['book'] });
    const anonymous = client.cookie!;
    expect(JSON.parse((await stores.metadataBackend.get(metadataKeyOf(anonymous)))!).ipLock).toBe('4:203.0.113');
    expect((await client.send('post', '/auth/login', '198.51.100.7', { user: 'carol' })).status).toBe(200);
    expect(client.cookie).not.toBe(anonymous);
    expect((await client.send('get', '/session', '198.51.100.7')).body).toMatchObject({ started: true, user: 'carol', data: {} });
    // The anonymous session is still there, still only for its own prefix, and not logged in.
    const left = new Client(app);
    left.cookie = anonymous;
    expect((await left.send('get', '/session', '203.0.113.1')).body).toMatchObject({
      started: true,
      user: null,
      data: { cart: ['book'] },
    });
  });

  it('fails closed: a login from a malformed client address is stored locked to no address, so nobody resumes it', async () => {
    // What the framework reports when the proxy forwards garbage: the untrusted hop, as is.
    const client = new Client(app);
    const login = await client.send('post', '/auth/login', 'not-an-address', { user: 'dave' });
    expect(login.status).toBe(200);
    const id = client.cookie!;
    expect(id).toBeDefined();
    const stored = JSON.parse((await stores.metadataBackend.get(metadataKeyOf(id)))!) as { userId?: string; ipLock?: string };
    expect(stored.userId).toBe('dave');
    expect(stored.ipLock).toBe(UNKNOWN_ADDRESS_LOCK);
    for (const from of ['not-an-address', '198.51.100.7', '2001:db8:1:2::1']) {
      const res = await client.stolen().send('get', '/session', from);
      expect(res.body).toMatchObject({ started: false, user: null });
    }
  });
});

describe.each<HttpAdapterName>(['express', 'fastify'])(
  'turning the IP lock on for stored sessions, on %s with Redis',
  (adapter) => {
    const prefix = uniquePrefix('e2e-iplock');
    const config = (ipLock: typeof LOCK | undefined) => ({
      session: ipLock === undefined ? {} : { ipLock },
      redis: { url: TEST_REDIS_URL, prefix },
      trustProxy: 'loopback' as const,
    });
    let redis: TestRedisClient;

    beforeAll(async () => {
      redis = await connectTestRedis();
    });
    afterAll(async () => {
      await deleteKeysMatching(redis, `${prefix}*`);
      await redis.close();
    });

    it('locks a session stored before the lock was on at its next write, to the address of that request', async () => {
      // Release 1: no IP lock. A user logs in and stores data.
      const before = await createSampleApp(adapter, config(undefined));
      const client = new Client(before);
      expect((await client.send('put', '/session/data/secret', '198.51.100.7', { value: 'mine' })).status).toBe(200);
      expect((await client.send('post', '/auth/login', '198.51.100.7', { user: 'erin' })).status).toBe(200);
      const id = client.cookie!;
      await before.close();

      // Release 2, on the same Redis: the lock is on. The session's next write locks it.
      const after = await createSampleApp(adapter, config(LOCK));
      try {
        const owner = new Client(after);
        owner.cookie = id;
        expect((await owner.send('put', '/session/data/more', '198.51.100.20', { value: 1 })).body).toBeDefined();
        expect(owner.cookie).toBe(id);
        const same = await owner.send('get', '/session', '198.51.100.30');
        expect(same.body).toMatchObject({ started: true, user: 'erin', data: { secret: 'mine', more: 1 } });
        const thief = owner.stolen();
        expect((await thief.send('get', '/session', '203.0.113.9')).body).toMatchObject({ started: false, user: null });
        // Still there for its owner: the refused request changed nothing.
        expect((await owner.send('get', '/session', '198.51.100.7')).body).toMatchObject({ started: true, user: 'erin' });
      } finally {
        await after.close();
      }
    });
  },
);
