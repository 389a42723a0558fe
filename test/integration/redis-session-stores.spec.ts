import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { createClient } from 'redis';
import { InvalidArgumentException, InvalidOptionException, StoreUnavailableException } from 'nest-session';
import { createRedisSessionStores, RedisBackend, RedisLocker } from 'nest-session/redis';
import { createSampleApp } from '../../sample-app/app.factory.js';
import { Browser } from '../support/http.js';
import { connectTestRedis, uniquePrefix, type TestRedisClient } from '../support/redis.js';
import { freePort, RedisServer } from '../support/redis-server.js';

/** Names of the connections a client named `name` (and its duplicates) holds open. */
async function connectionsNamed(admin: TestRedisClient, name: string): Promise<number> {
  const list = await admin.sendCommand<string>(['CLIENT', 'LIST']);
  return list.split('\n').filter((line) => line.includes(` name=${name} `)).length;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

describe('createRedisSessionStores', () => {
  let server: RedisServer;
  let admin: TestRedisClient;
  /** Apps a failed test may have left open. */
  const afterAllClose: INestApplication[] = [];

  beforeAll(async () => {
    server = await RedisServer.start();
    admin = await connectTestRedis(server.url);
  });
  afterAll(async () => {
    await Promise.allSettled(afterAllClose.map((app) => app.close()));
    await admin?.close();
    await server?.stop();
  });

  it('with a URL: connects, lays out metadata, storage and lock keys under the prefix, closes the client once', async () => {
    const prefix = uniquePrefix('stores');
    const stores = await createRedisSessionStores({ url: server.url, prefix, clientOptions: { name: 'owned-1' } });
    expect(stores.metadataBackend).toBeInstanceOf(RedisBackend);
    expect(stores.locker).toBeInstanceOf(RedisLocker);
    expect(stores.metadataBackend.prefix).toBe(`${prefix}m:`);
    expect(stores.storageBackend.prefix).toBe(`${prefix}s:`);
    await stores.metadataBackend.set('abc', 'meta', ['session'], 60);
    await stores.storageBackend.set('st1.color', 'blue', ['st1']);
    const lock = await stores.locker.acquire('st1', { waitTimeout: 0, ttl: 1000 });
    const keys = (await admin.keys(`${prefix}*`)).sort();
    expect(keys).toEqual(
      [
        `${prefix}l:lock:{st1}`,
        `${prefix}l:lock:{st1}:fence`,
        `${prefix}m:{abc}`,
        `${prefix}m:{session}#tag`,
        `${prefix}m:{}#expiry`,
        `${prefix}s:{st1}#tag`,
        `${prefix}s:{st1}.color`,
      ].sort(),
    );
    await lock.release();
    expect(await connectionsNamed(admin, 'owned-1')).toBe(1);

    const destroy = jest.spyOn(stores.client, 'destroy');
    // SessionModule closes all three in parallel; the returned close() may be called too.
    await Promise.all([stores.metadataBackend.close(), stores.storageBackend.close(), stores.locker.close(), stores.close()]);
    await stores.close();
    expect(destroy).toHaveBeenCalledTimes(1);
    expect(stores.client.isOpen).toBe(false);
    await sleep(50);
    expect(await connectionsNamed(admin, 'owned-1')).toBe(0);
  });

  it('stores the session layer’s own entries (`.~guard`, `.~bag:`), which no user key can name', async () => {
    const client = await connectTestRedis(server.url);
    const stores = await createRedisSessionStores({ client, prefix: uniquePrefix('tilde') });
    const result = await stores.storageBackend.write(
      { sets: [{ id: 'st.~bag:flashes', data: 'x', tags: ['st'] }] },
      { id: 'st.~guard', fence: 1, create: true, tags: ['st'] },
    );
    expect(result).toBe('ok');
    expect((await stores.storageBackend.getByTag('st')).map((e) => e.id).sort()).toEqual(['st.~bag:flashes', 'st.~guard']);
    await expect(stores.storageBackend.set('bad key', 'x')).rejects.toBeInstanceOf(InvalidArgumentException);
    await stores.close();
    await client.close();
  });

  it('with a client: uses it and never closes it', async () => {
    const client = await connectTestRedis(server.url);
    const stores = await createRedisSessionStores({ client, prefix: uniquePrefix('given') });
    expect(stores.client).toBe(client);
    await stores.storageBackend.set('x', '1');
    await Promise.all([stores.metadataBackend.close(), stores.storageBackend.close(), stores.locker.close(), stores.close()]);
    expect(client.isOpen).toBe(true);
    expect(await client.ping()).toBe('PONG');
    await client.close();
  });

  it('a connection error at boot throws at once, naming the URL without its password', async () => {
    const port = await freePort();
    const started = Date.now();
    const error = await createRedisSessionStores({ url: `redis://:s3cret-pw@127.0.0.1:${port}/0` }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(error).toBeInstanceOf(StoreUnavailableException);
    const message = (error as Error).message;
    expect(message).toContain(`redis://:***@127.0.0.1:${port}/0`);
    expect(message).not.toContain('s3cret-pw');
  });

  it('validates its options', async () => {
    await expect(createRedisSessionStores({})).rejects.toBeInstanceOf(InvalidOptionException);
    const client = await connectTestRedis(server.url);
    await expect(createRedisSessionStores({ url: server.url, client })).rejects.toBeInstanceOf(InvalidOptionException);
    await expect(createRedisSessionStores({ client, prefix: 'a{b}' })).rejects.toThrow(/prefix/);
    await expect(createRedisSessionStores({ url: server.url, commandTimeout: -1 })).rejects.toThrow(/commandTimeout/);
    const closed = createClient({ url: server.url });
    await expect(createRedisSessionStores({ client: closed as never })).rejects.toThrow(/connect/);
    await client.close();
  });

  it('fails fast while Redis is down, recovers by itself when it is back, and times out on a hung Redis', async () => {
    const own = await RedisServer.start();
    const stores = await createRedisSessionStores({ url: own.url, commandTimeout: 300, maxReconnectDelay: 100 });
    try {
      await stores.metadataBackend.set('k', 'v');
      await own.kill();
      const started = Date.now();
      for (let i = 0; i < 5; i++) {
        await expect(stores.metadataBackend.get('k')).rejects.toBeInstanceOf(StoreUnavailableException);
        await expect(stores.locker.acquire('s', { waitTimeout: 0, ttl: 1000 })).rejects.toBeInstanceOf(StoreUnavailableException);
      }
      // No offline queue: nothing waits for Redis (10 waits for the 300 ms command timeout would take 3 s;
      // the bound leaves room for a loaded CI machine, where 10 failures once took 521 ms).
      expect(Date.now() - started).toBeLessThan(2000);
      await own.launch();
      const deadline = Date.now() + 5000;
      let value: string | undefined = 'down';
      while (value === 'down' && Date.now() < deadline) {
        value = await stores.metadataBackend.get('k').catch(() => 'down' as const);
        if (value === 'down') await sleep(50);
      }
      expect(value).toBeUndefined(); // reconnected (this server keeps no data across restarts)
      await stores.metadataBackend.set('k', 'v2');
      await (await stores.locker.acquire('s', { waitTimeout: 0, ttl: 1000 })).release();

      // A Redis that accepts the connection but does not answer: the command timeout applies.
      const sleeper = await connectTestRedis(own.url);
      await sleeper.sendCommand(['CLIENT', 'PAUSE', '1000', 'ALL']);
      const hung = Date.now();
      await expect(stores.metadataBackend.get('k')).rejects.toBeInstanceOf(StoreUnavailableException);
      await expect(stores.locker.acquire('paused', { waitTimeout: 0, ttl: 100 })).rejects.toBeInstanceOf(
        StoreUnavailableException,
      );
      expect(Date.now() - hung).toBeLessThan(900);
      await sleep(1100);
      expect(await stores.metadataBackend.get('k')).toBe('v2');
      await sleeper.close();
    } finally {
      await stores.close();
      await own.stop();
    }
  });

  it('through SessionModule (sample app, SESSION_BACKEND=redis): app.close() closes every connection it opened', async () => {
    const name = `app-${Date.now()}`;
    const app: INestApplication = await createSampleApp('express', {
      redis: { url: server.url, prefix: uniquePrefix('app'), clientOptions: { name } },
      session: { lock: { waitTimeout: 2000, ttl: 5000 } },
    });
    afterAllClose.push(app);
    const browser = new Browser(app);
    await browser.put('/session/data/n', { value: 1 });
    // Contention makes the locker open its Pub/Sub connection too.
    const held = request(app.getHttpServer())
      .post('/counter/c/increment?lock=1&delay=200')
      .set('Cookie', `sid=${browser.cookie!}`);
    const heldDone = held.then((r) => r);
    await sleep(80);
    const waiter = await request(app.getHttpServer()).post('/counter/c/increment?lock=1').set('Cookie', `sid=${browser.cookie!}`);
    expect([waiter.status, waiter.body]).toEqual([200, { key: 'c', value: 2 }]);
    expect((await heldDone).status).toBe(200);
    expect(await connectionsNamed(admin, name)).toBe(2);
    await app.close();
    await sleep(50);
    expect(await connectionsNamed(admin, name)).toBe(0);
  });
});
