import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { Cluster as Cluster6, Redis as Redis6 } from 'ioredis6';
import { createClient as createClient6, createCluster as createCluster6 } from 'redis6';
import { InvalidArgumentException, InvalidOptionException } from 'nest-session';
import { createRedisSessionStores, fromIoRedis, RedisBackend, RedisLocker, type RedisSessionStores } from 'nest-session/redis';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { SessionStore } from '../../lib/session/session.store.js';
import type {
  RedisClusterCommandClient,
  RedisCommandClient,
  RedisLockerClient,
  RedisLockerClusterClient,
} from 'nest-session/redis';
import { backendContract } from '../contract/backend.contract.js';
import { lockerContract } from '../contract/locker.contract.js';
import { guardOf, movesGroupsContract } from '../contract/moves-groups.contract.js';
import { unlockedCommitContract } from '../contract/unlocked-commit.contract.js';
import { sessionManagerContract } from '../contract/session-manager.contract.js';
import { RedisClusterServer } from '../support/redis-cluster.js';
import { connectTestRedis, TEST_REDIS_URL, type TestRedisClient } from '../support/redis.js';

/*
 * The Redis engine on every supported client: node-redis 6 (`redis6`, next to node-redis 5 that
 * the other Redis specs use), ioredis 5 and ioredis 6 (`ioredis6`), standalone and on a Redis Cluster. The same backend,
 * locker, SessionManager and unlocked-commit contract suites as node-redis 5 must pass on each,
 * and the moving-groups suite on each standalone client.
 */

const uniquePrefix = (name: string): string => `test:clients:${name}:${randomBytes(4).toString('hex')}:`;

let admin: TestRedisClient;
let node6: ReturnType<typeof createClient6>;
let io: Redis;
let io6: Redis6;
let io6Cluster: Cluster6;
let clusterServer: RedisClusterServer;
let ioCluster: Cluster;
let node6Cluster: ReturnType<typeof createCluster6>;

beforeAll(async () => {
  Logger.overrideLogger(['error', 'warn']);
  admin = await connectTestRedis();
  node6 = createClient6({ url: TEST_REDIS_URL });
  await node6.connect();
  io = new Redis(TEST_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await io.connect();
  io6 = new Redis6(TEST_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await io6.connect();
  clusterServer = await RedisClusterServer.start(3);
  ioCluster = new Cluster(
    clusterServer.ports.map((port) => ({ host: '127.0.0.1', port })),
    { shardedSubscribers: true, lazyConnect: true },
  );
  await ioCluster.connect();
  io6Cluster = new Cluster6(
    clusterServer.ports.map((port) => ({ host: '127.0.0.1', port })),
    { shardedSubscribers: true, lazyConnect: true },
  );
  await io6Cluster.connect();
  node6Cluster = createCluster6({ rootNodes: clusterServer.rootNodes });
  await node6Cluster.connect();
}, 90_000);

afterAll(async () => {
  const keys = await admin.keys('test:clients:*');
  if (keys.length > 0) await admin.del(keys);
  await Promise.allSettled([
    admin.close(),
    node6.close(),
    io.quit(),
    io6.quit(),
    ioCluster.quit(),
    io6Cluster.quit(),
    node6Cluster.close(),
  ]);
  await clusterServer?.stop();
});

/** Every key under `prefix` on every master of the test cluster. */
async function clusterKeys(pattern: string): Promise<string[]> {
  const keys: string[] = [];
  for (const node of ioCluster.nodes('master')) keys.push(...(await node.keys(pattern)));
  return keys;
}

async function deleteEverywhere(prefix: string): Promise<void> {
  for (const node of ioCluster.nodes('master')) {
    const keys = await node.keys(`${prefix}*`);
    for (const key of keys) await ioCluster.del(key);
  }
}

interface ClientUnderTest {
  readonly name: string;
  /** The client as the engine takes it (ioredis through `fromIoRedis`). */
  readonly client: () => RedisLockerClient | (RedisClusterCommandClient & RedisLockerClusterClient);
  /** The client as the user has it (what `createRedisSessionStores({ client })` is given). */
  readonly raw: () => Parameters<typeof createRedisSessionStores>[0]['client'];
  readonly cluster: boolean;
}

const CLIENTS: ClientUnderTest[] = [
  {
    name: 'node-redis 6',
    client: () => node6,
    raw: () => node6,
    cluster: false,
  },
  { name: 'ioredis 5', client: () => fromIoRedis(io), raw: () => io, cluster: false },
  {
    name: 'ioredis 6',
    client: () => fromIoRedis(io6),
    raw: () => io6,
    cluster: false,
  },
  {
    name: 'node-redis 6 cluster',
    client: () => node6Cluster,
    raw: () => node6Cluster,
    cluster: true,
  },
  { name: 'ioredis 5 cluster', client: () => fromIoRedis(ioCluster), raw: () => ioCluster, cluster: true },
  {
    name: 'ioredis 6 cluster',
    client: () => fromIoRedis(io6Cluster),
    raw: () => io6Cluster,
    cluster: true,
  },
];

async function keysOf(target: ClientUnderTest, prefix: string): Promise<string[]> {
  return target.cluster ? clusterKeys(`${prefix}*`) : admin.keys(`${prefix}*`);
}

async function cleanupOf(target: ClientUnderTest, prefix: string): Promise<void> {
  if (target.cluster) {
    await deleteEverywhere(prefix);
    return;
  }
  const keys = await admin.keys(`${prefix}*`);
  if (keys.length > 0) await admin.del(keys);
}

for (const target of CLIENTS) {
  backendContract(
    target.name,
    async () => {
      const prefix = uniquePrefix('backend');
      const backend = new RedisBackend({ client: target.client(), prefix });
      return { backend, cleanup: () => cleanupOf(target, prefix) };
    },
    { realTime: true },
  );

  lockerContract(target.name, async () => {
    const prefix = uniquePrefix('locker');
    const locker = new RedisLocker({ client: target.client(), prefix });
    return {
      locker,
      cleanup: async () => {
        await locker.close();
        await cleanupOf(target, prefix);
      },
    };
  });

  sessionManagerContract(
    target.name,
    async () => {
      const prefix = uniquePrefix('manager');
      const stores = await createRedisSessionStores({ client: target.raw(), prefix });
      return {
        metadataBackend: stores.metadataBackend,
        storageBackend: stores.storageBackend,
        locker: stores.locker,
        cleanup: async () => {
          await stores.close();
          await cleanupOf(target, prefix);
        },
        storedTagCount: async () => (await keysOf(target, `${prefix}m:{`)).filter((k) => k.endsWith('}#tag')).length,
      };
    },
    { realTime: true },
  );

  // Moving groups (mustMatch, copyFrom) is a unit of the standalone write coalescer's script: a
  // cluster backend has no `movesGroups` (checked below), so the suite runs standalone only.
  if (!target.cluster) {
    describe(`TaggableBackend ${target.name}`, () => {
      const prefixes: string[] = [];
      afterAll(async () => {
        for (const prefix of prefixes) await cleanupOf(target, prefix);
      });
      movesGroupsContract(target.name, async () => {
        const prefix = uniquePrefix('moves');
        prefixes.push(prefix);
        return new RedisBackend({ client: target.client(), prefix });
      });
    });
  }

  describe(`Unlocked commits on ${target.name} (WriteGuard.unlocked, checked in the write script)`, () => {
    const prefix = uniquePrefix('unlocked');
    let stores: RedisSessionStores;
    let store: SessionStore;
    beforeAll(async () => {
      stores = await createRedisSessionStores({ client: target.raw(), prefix });
      const { metadataBackend, storageBackend, locker } = stores;
      store = new SessionStore(
        resolveSessionOptions({ metadataBackend, storageBackend, locker, lock: { waitTimeout: 5000, ttl: 5000 } }),
      );
    });
    afterAll(async () => {
      await stores.close();
      await cleanupOf(target, prefix);
    });
    // On a cluster, commits that write metadata or move storage take the lock (no movesGroups).
    unlockedCommitContract(
      `Redis on ${target.name}`,
      () => stores,
      () => store,
      () => new RedisBackend({ client: target.client(), prefix: `${prefix}bare:` }),
      !target.cluster,
      !target.cluster,
    );
  });
}

describe('moving groups on a cluster', () => {
  it('a cluster backend does not move groups, and refuses mustMatch and copyFrom', async () => {
    for (const target of CLIENTS.filter((c) => c.cluster)) {
      const backend = new RedisBackend({ client: target.client(), prefix: uniquePrefix('nomoves') });
      expect(backend.movesGroups).toBe(false);
      await expect(backend.write({ mustMatch: [{ id: 'a.b', data: 'x' }] })).rejects.toThrow(InvalidArgumentException);
      await expect(backend.write({}, guardOf('dst', { copyFrom: 'src' }))).rejects.toThrow(InvalidArgumentException);
    }
  });
});

describe('client checks', () => {
  it('wakes an ioredis waiter by Pub/Sub, standalone and on the cluster, not by its timer', async () => {
    for (const client of [fromIoRedis(io), fromIoRedis(ioCluster)]) {
      const locker = new RedisLocker({ client, prefix: uniquePrefix('wake'), waiterTtl: 30_000 });
      try {
        const first = await locker.acquire('k', { waitTimeout: 0, ttl: 20_000 });
        const started = Date.now();
        const second = locker.acquire('k', { waitTimeout: 5000, ttl: 1000 });
        await new Promise((resolve) => setTimeout(resolve, 100));
        await first.release();
        await (await second).release();
        // The ticket refresh timer is 10 s and the lock's TTL 20 s: only a message wakes it this early.
        expect(Date.now() - started).toBeLessThan(2000);
      } finally {
        await locker.close();
      }
    }
  });

  it('refuses anything but node-redis and ioredis with a message naming the supported clients', async () => {
    await expect(createRedisSessionStores({ client: {} as RedisLockerClient })).rejects.toThrow(
      /node-redis 5 or 6 client .* or an ioredis 5 or 6 client/,
    );
  });

  it('a hand-built RedisBackend and RedisLocker take a raw ioredis 5 or 6 client, standalone and cluster (no fromIoRedis)', async () => {
    for (const [name, raw] of [
      ['ioredis 5', io],
      ['ioredis 6', io6],
      ['ioredis 5 cluster', ioCluster],
      ['ioredis 6 cluster', io6Cluster],
    ] as const) {
      const prefix = uniquePrefix('raw');
      const backend = new RedisBackend({ client: raw, prefix });
      expect(
        await backend.write(
          { sets: [{ id: 'g.a', data: name, tags: ['g'] }] },
          { id: 'g.~guard', fence: 0, create: true, tags: ['g'] },
        ),
      ).toBe('ok');
      expect(await backend.get('g.a')).toBe(name);
      expect((await backend.findIdentifiersByTag('g')).sort()).toEqual(['g.a', 'g.~guard']);
      const locker = new RedisLocker({ client: raw, prefix, waiterTtl: 30_000 });
      try {
        const first = await locker.acquire('k', { waitTimeout: 0, ttl: 20_000 });
        const started = Date.now();
        const second = locker.acquire('k', { waitTimeout: 5000, ttl: 1000 });
        await new Promise((resolve) => setTimeout(resolve, 100));
        await first.release();
        const next = await second;
        // Woken by Pub/Sub (the timers are 10 s and 20 s away), with a fence above the first.
        expect(Date.now() - started).toBeLessThan(2000);
        expect(next.fence).toBeGreaterThan(first.fence);
        await next.release();
      } finally {
        await locker.close();
        await backend.flush();
      }
      // Left: only the lock's fence counter, which outlives locks by design (fenceTtl).
      const left = await keysOf({ cluster: name.endsWith('cluster') } as ClientUnderTest, prefix);
      expect(left).toEqual([`${prefix}lock:{k}:fence`]);
    }
  });

  it('a RedisLocker takes a raw ioredis subscriber and leaves it open', async () => {
    const name = `given-sub-${randomBytes(4).toString('hex')}`;
    const subscriber = io.duplicate({ connectionName: name });
    await subscriber.connect();
    const locker = new RedisLocker({ client: io, subscriber, prefix: uniquePrefix('sub'), waiterTtl: 30_000 });
    try {
      const first = await locker.acquire('k', { waitTimeout: 0, ttl: 20_000 });
      const second = locker.acquire('k', { waitTimeout: 5000, ttl: 1000 });
      await new Promise((resolve) => setTimeout(resolve, 100));
      // The waiter listens on the given connection (one subscription), not on a duplicate of its own.
      const given = (await admin.clientList()).filter((c) => c.name === name);
      expect(given.map((c) => c.sub)).toEqual([1]);
      await first.release();
      await (await second).release();
      await locker.close();
      expect(subscriber.status).toBe('ready');
    } finally {
      await subscriber.quit();
    }
  });

  it('RedisBackend and RedisLocker refuse anything else with a message naming every supported client and how to pass it', () => {
    const supported =
      'a node-redis 5 or 6 client (createClient() or createCluster(), passed as it is) or an ioredis 5 or 6 client ' +
      '(new Redis() or new Redis.Cluster(nodes, { shardedSubscribers: true }), passed as it is or through fromIoRedis())';
    // No client at all, a plain object, a client of another kind (a cache-manager-like store), a wrapper of half a client.
    const others: unknown[] = [{}, { get: async () => null, set: async () => undefined }, { sendCommand: 'no' }];
    for (const other of others) {
      expect(() => new RedisBackend({ client: other as RedisCommandClient })).toThrow(
        new InvalidOptionException(`SessionModule option "redis.client" must be ${supported}, connected.`),
      );
      expect(() => new RedisLocker({ client: other as RedisLockerClient })).toThrow(
        new InvalidArgumentException(`RedisLocker: \`client\` must be ${supported}, connected.`),
      );
    }
    expect(() => new RedisBackend({ client: undefined as unknown as RedisCommandClient })).toThrow(supported);
    expect(() => new RedisLocker({ client: undefined as unknown as RedisLockerClient })).toThrow(supported);
    // Commands but no scripts (a node-redis-like wrapper that forwards sendCommand only): fine for
    // a backend, not for a locker.
    const commandsOnly = { sendCommand: (args: readonly string[]) => node6.sendCommand([...args]) };
    expect(new RedisBackend({ client: commandsOnly }).prefix).toBe('sess:');
    expect(() => new RedisLocker({ client: commandsOnly as unknown as RedisLockerClient })).toThrow(supported);
    // A cluster-looking object that is none of the supported cluster clients.
    const fakeCluster = { masters: [], sendCommand: async () => null, evalSha: async () => null, eval: async () => null };
    expect(() => new RedisBackend({ client: fakeCluster })).toThrow(
      `SessionModule option "redis.client" is a cluster client of no supported kind: it must be ${supported}.`,
    );
    expect(() => new RedisLocker({ client: fakeCluster as unknown as RedisLockerClient })).toThrow(supported);
    // A subscriber of the wrong kind is named as such.
    expect(() => new RedisLocker({ client: node6, subscriber: {} as RedisLockerClient })).toThrow(
      `RedisLocker: \`subscriber\` must be ${supported}, connected.`,
    );
  });

  it('RedisBackend and RedisLocker refuse an ioredis client that is not connected; only the locker needs sharded subscribers', async () => {
    const lazy = new Redis(TEST_REDIS_URL, { lazyConnect: true });
    expect(() => new RedisBackend({ client: lazy })).toThrow(
      new InvalidOptionException(
        'SessionModule option "redis.client" must be connected: await client.connect() first (an ioredis client with lazyConnect, or one that was quit).',
      ),
    );
    expect(() => new RedisLocker({ client: lazy })).toThrow(/must be connected: await client.connect\(\) first/);
    const plain = new Cluster(
      clusterServer.ports.map((port) => ({ host: '127.0.0.1', port })),
      { lazyConnect: true },
    );
    await plain.connect();
    const prefix = uniquePrefix('plain');
    try {
      // The backend never subscribes: a cluster without sharded subscribers serves it.
      const backend = new RedisBackend({ client: plain, prefix });
      await backend.set('x', 'y');
      expect(await backend.get('x')).toBe('y');
      await backend.flush();
      expect(() => new RedisLocker({ client: plain, prefix })).toThrow(
        'must be an ioredis Cluster created with { shardedSubscribers: true }: the locker wakes waiters with sharded Pub/Sub (SSUBSCRIBE)',
      );
    } finally {
      await plain.quit();
    }
  });

  it('refuses an ioredis client that is not connected, and a cluster without sharded subscribers', async () => {
    const lazy = new Redis(TEST_REDIS_URL, { lazyConnect: true });
    await expect(createRedisSessionStores({ client: lazy })).rejects.toThrow(InvalidOptionException);
    await expect(createRedisSessionStores({ client: lazy })).rejects.toThrow(/must be connected/);
    const plain = new Cluster(
      clusterServer.ports.map((port) => ({ host: '127.0.0.1', port })),
      { lazyConnect: true },
    );
    await plain.connect();
    try {
      expect(() => fromIoRedis(plain)).toThrow(/shardedSubscribers: true/);
    } finally {
      await plain.quit();
    }
  });
});

describe('the sample app with REDIS_CLIENT=ioredis', () => {
  it('logs in, keeps data across two app instances (Express and Fastify), logs out', async () => {
    const { createSampleApp } = await import('../../sample-app/app.factory.js');
    const { sessionConfigFromEnv } = await import('../../sample-app/session-env.config.js');
    const prefix = uniquePrefix('sample');
    const env = {
      SESSION_BACKEND: 'redis',
      REDIS_URL: TEST_REDIS_URL,
      SESSION_PREFIX: prefix,
      REDIS_CLIENT: 'ioredis',
      SESSION_GC: 'manual',
    };
    const config = sessionConfigFromEnv(env).config;
    expect(config.redisClient).toBe('ioredis');
    const [one, two] = [await createSampleApp('express', config), await createSampleApp('fastify', config)];
    try {
      const { Browser } = await import('../support/http.js');
      const browser = new Browser(one);
      await browser.put('/session/data/color', { value: 'blue' });
      await browser.post('/auth/login', { user: 'ivy' });
      const elsewhere = Object.assign(new Browser(two), { cookie: browser.cookie });
      const seen = await elsewhere.get('/session');
      expect(seen.body).toMatchObject({ started: true, user: 'ivy', data: { color: 'blue' } });
      await elsewhere.post('/auth/logout');
      expect((await browser.get('/session')).body).toMatchObject({ started: false });
      expect((await admin.keys(`${prefix}m:*`)).filter((k) => k.includes('h:'))).toEqual([]);
    } finally {
      await one.close();
      await two.close();
    }
  });

  it('refuses an unknown REDIS_CLIENT', async () => {
    const { sessionConfigFromEnv } = await import('../../sample-app/session-env.config.js');
    expect(() => sessionConfigFromEnv({ SESSION_BACKEND: 'redis', REDIS_CLIENT: 'jedis' })).toThrow(/node-redis or ioredis/);
  });
});
