import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { RedisBackend, type RedisClusterCommandClient } from '../../lib/redis/redis.backend.js';
import { createRedisSessionStores, type RedisSessionStores } from '../../lib/redis/redis-session.factory.js';
import { InvalidArgumentException } from '../../lib/errors/invalid-argument.exception.js';
import { RedisLocker } from '../../lib/redis/redis.locker.js';
import { backendContract } from '../contract/backend.contract.js';
import { lockerContract } from '../contract/locker.contract.js';
import { sessionManagerContract } from '../contract/session-manager.contract.js';
import { unlockedCommitContract } from '../contract/unlocked-commit.contract.js';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { connectTestCluster, RedisClusterServer, type TestRedisCluster } from '../support/redis-cluster.js';
import { metadataKeyOf } from '../../lib/session/session-key.js';
import { created, resumed } from '../support/session-requests.js';

/**
 * RedisBackend, RedisLocker and the SessionManager on a real Redis Cluster: three local
 * `redis-server --cluster-enabled yes` masters started for this file (fails, never skips, when
 * redis-server or redis-cli is missing). A Redis Cluster refuses a script or a multi-key
 * command whose keys lie in different slots (CROSSSLOT, or "non local key"), so every suite
 * passing here shows the key design holds.
 */
let server: RedisClusterServer;
let cluster: TestRedisCluster;

beforeAll(async () => {
  Logger.overrideLogger(['error', 'warn']);
  server = await RedisClusterServer.start(3);
  cluster = await connectTestCluster(server);
}, 60_000);

afterAll(async () => {
  if (cluster?.isOpen) cluster.destroy();
  await server?.stop();
});

const uniquePrefix = (name: string): string => `test:${name}:${randomBytes(4).toString('hex')}:`;

/** Every key matching `pattern` on every master (SCAN per node). */
async function clusterKeys(pattern: string): Promise<string[]> {
  const keys: string[] = [];
  for (const master of cluster.masters) {
    const node = await cluster.nodeClient(master);
    for await (const batch of node.scanIterator({ MATCH: pattern, COUNT: 1000 })) keys.push(...batch.map(String));
  }
  return keys.sort();
}

/** The `host:port` of the master serving `key`. */
async function nodeOf(key: string): Promise<string> {
  const slot = Number(await cluster.sendCommand(key, true, ['CLUSTER', 'KEYSLOT', key]));
  const master = cluster.slots[slot]!.master;
  return `${master.host}:${master.port}`;
}

async function deleteKeys(pattern: string): Promise<void> {
  for (const key of await clusterKeys(pattern)) await cluster.del(key);
}

function makeBackend(name: string, client: RedisClusterCommandClient = cluster): RedisBackend {
  return new RedisBackend({ client, prefix: uniquePrefix(name) });
}

describe('the test cluster', () => {
  it('has three masters sharing the slots, and keys of different groups land on different nodes', async () => {
    expect(cluster.masters).toHaveLength(3);
    const backend = makeBackend('spread');
    const nodes = new Set(
      await Promise.all(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map((g) => nodeOf(backend.entryKey(`${g}.x`)))),
    );
    expect(nodes.size).toBeGreaterThan(1);
  });

  it('refuses a script that touches keys of two slots, as any Redis Cluster does', async () => {
    const [a, b] = ['{one}x', '{two}x'];
    const script = "redis.call('SET', KEYS[1], '1'); redis.call('SET', KEYS[2], '1'); return 1";
    await expect(cluster.sendCommand(a, false, ['EVAL', script, '2', a, b])).rejects.toThrow(/CROSSSLOT/);
    const undeclared = `redis.call('SET', KEYS[1], '1'); redis.call('SET', '${b}', '1'); return 1`;
    await expect(cluster.sendCommand(a, false, ['EVAL', undeclared, '1', a])).rejects.toThrow(/slot|non local key/);
    expect(await cluster.exists(b)).toBe(0);
    await cluster.del(a);
  });
});

backendContract(
  'redis cluster',
  async () => {
    const backend = makeBackend('contract');
    return { backend, cleanup: () => backend.flush() };
  },
  { realTime: true },
);

lockerContract('redis cluster', async () => {
  const prefix = uniquePrefix('locker');
  const locker = new RedisLocker({ client: cluster, prefix });
  return {
    locker,
    cleanup: async () => {
      await locker.close();
      await deleteKeys(`${prefix}*`);
    },
  };
});

sessionManagerContract(
  'redis cluster',
  async () => {
    const prefix = uniquePrefix('manager');
    const stores = await createRedisSessionStores({ client: cluster, prefix });
    return {
      metadataBackend: stores.metadataBackend,
      storageBackend: stores.storageBackend,
      locker: stores.locker,
      cleanup: async () => {
        await stores.close();
        await deleteKeys(`${prefix}*`);
      },
      storedTagCount: async () => (await clusterKeys(`${prefix}m:{*}#tag`)).length,
    };
  },
  { realTime: true },
);

describe('Unlocked commits on a cluster (WriteGuard.unlocked, checked in the write script)', () => {
  const prefix = uniquePrefix('unlocked');
  let stores: RedisSessionStores;
  let store: SessionStore;
  beforeAll(async () => {
    stores = await createRedisSessionStores({ client: cluster, prefix });
    const { metadataBackend, storageBackend, locker } = stores;
    store = new SessionStore(
      resolveSessionOptions({ metadataBackend, storageBackend, locker, lock: { waitTimeout: 5000, ttl: 5000 } }),
    );
  });
  afterAll(async () => {
    await stores.close();
    await deleteKeys(`${prefix}*`);
  });
  it("a login's and a destroy's flush of the old storage deletes its lock's fence counter (same slot)", async () => {
    const counters = async (): Promise<string[]> => clusterKeys(`${prefix}l:lock:{*}:fence`);
    let id = await created(store, { a: 1 });
    for (let i = 0; i < 3; i++) {
      const write = await resumed(store, id);
      await write.putData('n', i); // unlocked: draws a fence, the counter is set
      await write.commit();
      const login = await resumed(store, id);
      login.bindToUser(`user${i}`); // on a cluster under the lock, which sets the counter too
      await login.commit();
      await login.dispose();
      id = login.getId();
    }
    const live = (await store.loadMetadata(metadataKeyOf(id)))!.storageId;
    expect((await counters()).filter((key) => !key.includes(`{${live}}`))).toEqual([]);
    const doomed = await resumed(store, id);
    await doomed.destroy();
    expect(await counters()).toEqual([]);
  });

  // Data-only commits go without the lock; commits that write metadata or move storage take it
  // (a cluster backend has no movesGroups).
  unlockedCommitContract(
    'Redis cluster',
    () => stores,
    () => store,
    () => makeBackend('bare'),
    false,
  );
});

describe('RedisBackend on a cluster', () => {
  it('keeps a session in one slot, while its metadata tags and the expiry index live elsewhere', async () => {
    const stores = await createRedisSessionStores({ client: cluster, prefix: uniquePrefix('layout') });
    const { metadataBackend: meta, storageBackend: storage } = stores;
    try {
      await storage.write(
        {
          sets: [
            { id: 'sid1.cart', data: 'C', tags: ['sid1'] },
            { id: 'sid1.user', data: 'U', tags: ['sid1'] },
          ],
        },
        { id: 'sid1.~guard', fence: 1, create: true, tags: ['sid1'] },
      );
      await meta.set('sessA', '{}', ['session', 'storage-sid1', 'tag-user-x'], 600);

      const storageKeys = [
        storage.entryKey('sid1.cart'),
        storage.entryKey('sid1.user'),
        storage.entryKey('sid1.~guard'),
        storage.tagKey('sid1'),
      ];
      const slots = await Promise.all(storageKeys.map((key) => cluster.sendCommand(key, true, ['CLUSTER', 'KEYSLOT', key])));
      expect(new Set(slots).size).toBe(1);

      const metaKeys = [
        meta.entryKey('sessA'),
        meta.tagKey('session'),
        meta.tagKey('storage-sid1'),
        meta.tagKey('tag-user-x'),
        meta.expiryIndexKey,
      ];
      const metaNodes = new Set(await Promise.all(metaKeys.map(nodeOf)));
      expect(metaNodes.size).toBeGreaterThan(1); // what a standalone-only script could not have written
      expect(await meta.findIdentifiersByTag('tag-user-x')).toEqual(['sessA']);
      expect(await meta.getByTag('session')).toEqual([{ id: 'sessA', data: '{}' }]);
      expect(await storage.getByTag('sid1')).toHaveLength(3);
    } finally {
      await stores.metadataBackend.flush();
      await stores.storageBackend.flush();
      await stores.close();
    }
  });

  it('reads many ids of different slots in one call, and flushes keys on every node', async () => {
    const backend = makeBackend('many');
    const ids = Array.from({ length: 30 }, (_, i) => `g${i}.k`);
    await backend.write({ sets: ids.map((id, i) => ({ id, data: String(i), tags: ['many'] })) });
    expect(await backend.getMany([...ids, 'nope.k'])).toEqual([...ids.map((_, i) => String(i)), undefined]);
    expect((await backend.findIdentifiersByTag('many')).sort()).toEqual([...ids].sort());

    const nodes = new Set(await Promise.all(ids.map((id) => nodeOf(backend.entryKey(id)))));
    expect(nodes.size).toBe(3);
    await backend.flush();
    expect(await clusterKeys(`${backend.prefix}*`)).toEqual([]);
  });

  it('refuses a guarded batch with an id outside the guard group before touching Redis', async () => {
    const backend = makeBackend('guard');
    await expect(
      backend.write({ sets: [{ id: 'other.a', data: 'A' }] }, { id: 'mine.~guard', fence: 1, create: true }),
    ).rejects.toThrow(InvalidArgumentException);
    expect(await clusterKeys(`${backend.prefix}*`)).toEqual([]);
  });

  it('sends a write and its index upkeep in one tick; a guarded storage write is one script', async () => {
    const sent: string[][] = [];
    const recording: RedisClusterCommandClient = {
      sendCommand(firstKey, isReadonly, args) {
        sent.push([...args]);
        return cluster.sendCommand(firstKey, isReadonly, args);
      },
      get masters() {
        return cluster.masters;
      },
      nodeClient: (node) => cluster.nodeClient(node as (typeof cluster.masters)[number]),
    };
    const backend = makeBackend('tick', recording);
    await backend.set('warm.a', 'x', ['t1', 't2'], 60); // NOSCRIPT -> EVAL, once per node

    sent.length = 0;
    const pending = backend.set('s1', '{}', ['session', 'storage-x'], 60);
    // Every command was issued before any reply arrived: node-redis pipelines them.
    expect(sent.map((c) => c[0])).toEqual(['EVALSHA', 'EVALSHA', 'EVALSHA', 'EVALSHA']); // TAG_ADD x2, EXPIRY_ADD, WRITE
    await pending;

    await backend.write({}, { id: 'st.~guard', fence: 1, create: true, tags: ['st'] });
    sent.length = 0;
    const storage = backend.write(
      {
        sets: [
          { id: 'st.a', data: 'A', tags: ['st'] },
          { id: 'st.b', data: 'B', tags: ['st'] },
        ],
        removes: ['st.c'],
      },
      { id: 'st.~guard', fence: 2, tags: ['st'] },
    );
    await expect(storage).resolves.toBe('ok');
    expect(sent.map((c) => c[0])).toEqual(['EVALSHA']);
    await backend.flush();
  });

  describe('stays consistent when index upkeep in other slots is lost (a crash between the commands)', () => {
    it('prunes a membership whose entry never arrived or no longer carries the tag', async () => {
      const backend = makeBackend('stale');
      await backend.set('live.a', 'A', ['shared']);
      await backend.set('moved.b', 'B', ['elsewhere']);
      await cluster.zAdd(backend.tagKey('shared'), [
        { score: 7, value: 'ghost.x' },
        { score: 8, value: 'moved.b' },
      ]);
      expect(await backend.findIdentifiersByTag('shared')).toEqual(['live.a']);
      expect(await cluster.zRange(backend.tagKey('shared'), 0, -1)).toEqual(['live.a']);
      expect(await backend.flushByTag('shared')).toBe(1);
      expect(await backend.get('moved.b')).toBe('B');
      await backend.flush();
    });

    it('an entry missing from the expiry index is invisible once expired and has a native TTL', async () => {
      const backend = new RedisBackend({ client: cluster, prefix: uniquePrefix('noindex'), safetyTtlMargin: 30 });
      await backend.set('lost.a', 'A', ['lost-t'], 1);
      await cluster.zRem(backend.expiryIndexKey, 'lost.a');
      expect(await cluster.pTTL(backend.entryKey('lost.a'))).toBeGreaterThan(30_000);
      expect(await cluster.pTTL(backend.entryKey('lost.a'))).toBeLessThanOrEqual(31_000);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      expect(await backend.get('lost.a')).toBeUndefined();
      expect(await backend.findIdentifiersByTag('lost-t')).toEqual([]);
      expect(await backend.collectGarbage()).toEqual([]);
      await backend.flush();
    });

    it('GC checks every due record against its entry: gone or permanent records go, a longer life is re-scored', async () => {
      const backend = makeBackend('gcfix');
      await backend.set('re.live', 'L', ['re-t'], 600);
      await backend.set('re.perm', 'P', ['re-t']);
      await cluster.zAdd(backend.expiryIndexKey, [
        { score: 1, value: 're.live' },
        { score: 2, value: 're.perm' },
        { score: 3, value: 're.gone' },
      ]);
      expect(await backend.collectGarbage()).toEqual([]);
      expect(await cluster.zRange(backend.expiryIndexKey, 0, -1)).toEqual(['re.live']);
      expect(Number(await cluster.zScore(backend.expiryIndexKey, 're.live'))).toBeGreaterThan(Date.now());
      expect((await backend.findIdentifiersByTag('re-t')).sort()).toEqual(['re.live', 're.perm']);
      await backend.flush();
    });

    it('GC removes an expired entry with its memberships in other slots', async () => {
      const backend = makeBackend('gcmove');
      await backend.set('old.a', 'O', ['gc-x', 'gc-y'], 1);
      await backend.set('new.b', 'N', ['gc-x'], 600);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      expect(await backend.collectGarbage()).toEqual([{ id: 'old.a', data: 'O' }]);
      expect(await cluster.zRange(backend.tagKey('gc-x'), 0, -1)).toEqual(['new.b']);
      expect(await cluster.exists(backend.tagKey('gc-y'))).toBe(0);
      expect(await cluster.zRange(backend.expiryIndexKey, 0, -1)).toEqual(['new.b']);
      await backend.flush();
    });

    it('a removal racing a re-creation of the same id never strips the new membership', async () => {
      const backend = makeBackend('race');
      for (let i = 0; i < 40; i++) {
        const id = `race${i}.a`;
        await backend.set(id, 'first', ['race-t', `race-u${i % 3}`], 60);
        await Promise.all([backend.remove(id), backend.set(id, 'second', ['race-t', `race-u${i % 3}`], 60)]);
        if ((await backend.get(id)) === 'second') {
          expect(await backend.findIdentifiersByTag('race-t')).toContain(id);
          expect(await backend.findIdentifiersByTag(`race-u${i % 3}`)).toContain(id);
        }
      }
      await backend.flush();
    });
  });
});

describe('RedisLocker on a cluster', () => {
  it('wakes a waiter by a sharded Pub/Sub message, not by its refresh timer', async () => {
    const prefix = uniquePrefix('wake');
    // waiterTtl 30 s: without a message the waiter would only look again after 10 s.
    const locker = new RedisLocker({ client: cluster, prefix, waiterTtl: 30_000 });
    const other = new RedisLocker({ client: cluster, prefix, waiterTtl: 30_000 });
    try {
      const holder = await locker.acquire('wk', { waitTimeout: 0, ttl: 20_000 });
      const waiting = other.acquire('wk', { waitTimeout: 5000, ttl: 1000 });
      await new Promise((resolve) => setTimeout(resolve, 150));
      const released = performance.now();
      await holder.release();
      const next = await waiting;
      expect(performance.now() - released).toBeLessThan(1000);
      expect(next.fence).toBeGreaterThan(holder.fence);
      await next.release();
    } finally {
      await Promise.all([locker.close(), other.close()]);
      await deleteKeys(`${prefix}*`);
    }
  });
});

describe('createRedisSessionStores with cluster options', () => {
  it('connects its own cluster client, serves the stores and closes it', async () => {
    const prefix = uniquePrefix('owned');
    const stores = await createRedisSessionStores({ cluster: { rootNodes: [server.rootNodes[0]!] }, prefix });
    expect(stores.client.masters).toHaveLength(3);
    await stores.metadataBackend.set('own1', 'M', ['session'], 60);
    expect(await stores.metadataBackend.findIdentifiersByTag('session')).toEqual(['own1']);
    const lock = await stores.locker.acquire('own1', { waitTimeout: 0, ttl: 1000 });
    await lock.release();
    await stores.metadataBackend.flush();
    await stores.close();
    expect(stores.client.isOpen).toBe(false);
  });

  it('fails at boot with the root node URLs, password redacted', async () => {
    await expect(
      createRedisSessionStores({ cluster: { rootNodes: [{ url: 'redis://user:secret@127.0.0.1:1' }] }, connectTimeout: 500 }),
    ).rejects.toThrow(/redis:\/\/user:\*\*\*@127\.0\.0\.1:1/);
  });
});
