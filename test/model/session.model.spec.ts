import { afterAll, beforeAll, describe, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import fc from 'fast-check';
import { MemoryBackend, MemoryLocker } from 'nest-session';
import { createRedisSessionStores, type RedisSessionStores } from 'nest-session/redis';
import { createPostgresSessionStores, type PostgresSessionStores } from 'nest-session/postgres';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { fakeOnlyDate } from '../support/fake-date.js';
import { withLatency } from '../support/store-latency.js';
import { connectTestRedis, uniquePrefix, type TestRedisClient } from '../support/redis.js';
import { connectTestCluster, RedisClusterServer, type TestRedisCluster } from '../support/redis-cluster.js';
import { cmdArbitrary, makeHarness, ModelRun, type Harness, type Stores } from './session.model.js';

/*
 * Model-based randomized test of the write protocol (issue 11, "Done when"): random command
 * sequences of 1-4 interleaved requests per session are run against real sessions and a
 * reference model (./session.model.ts), on the memory backend, on Redis and (CI=true) on a
 * Redis Cluster. Properties: no lost update, no zombie, no data loss, no 409 for a legal
 * sequence. Deterministic per seed: MODEL_SEED=<seed> (printed on failure) replays a run,
 * MODEL_RUNS=<n> changes the number of runs.
 */

/**
 * CI (CI=true) runs one fixed seed, so that a submission's result is reproducible; elsewhere
 * every run explores a new seed. MODEL_SEED overrides both.
 */
const CI_SEED = 20261201;
const SEED =
  process.env.MODEL_SEED !== undefined
    ? Number(process.env.MODEL_SEED)
    : process.env.CI === 'true'
      ? CI_SEED
      : Math.floor(Math.random() * 2 ** 31);
const RUNS = process.env.MODEL_RUNS === undefined ? undefined : Number(process.env.MODEL_RUNS);
const commands = fc.array(cmdArbitrary(), { minLength: 1, maxLength: 40, size: 'max' });

async function check(name: string, runs: number, harness: () => Promise<Harness>, done?: (h: Harness) => Promise<void>) {
  const property = fc.asyncProperty(commands, async (cmds) => {
    const h = await harness();
    try {
      // Every run starts a day after the last one: nothing of an earlier run is live any more.
      jest.setSystemTime(Date.now() + 86_400_000);
      await new ModelRun(h).run(cmds);
    } finally {
      await done?.(h);
    }
  });
  try {
    await fc.assert(property, { numRuns: RUNS ?? runs, seed: SEED, includeErrorInReport: true });
  } catch (error) {
    throw new Error(`${name}: model-based test failed (replay: MODEL_SEED=${SEED})\n${(error as Error).message}`);
  }
}

beforeAll(() => {
  Logger.overrideLogger(['error']);
  fakeOnlyDate(new Date('2031-01-01T00:00:00.000Z'));
});

afterAll(() => {
  jest.useRealTimers();
  if (process.env.MODEL_STATS !== undefined)
    console.log(
      [...ModelRun.stats]
        .sort()
        .map(([k, n]) => `${k}: ${n}`)
        .join('\n'),
    );
});

describe('session protocol model', () => {
  it('memory backend', async () => {
    await check(
      'memory',
      1200,
      async () => {
        const stores: Stores = {
          metadataBackend: new MemoryBackend(),
          storageBackend: new MemoryBackend(),
          locker: new MemoryLocker(),
        };
        return makeHarness(stores);
      },
      async (h) => {
        await h.stores.locker.close?.();
      },
    );
  }, 120_000);

  // A store with latency (0-3 ms per metadata call, seeded): calls a request sends together
  // finish out of order, as on PostgreSQL or a remote Redis. It found open() handling the
  // guard check's failure while its re-read was still running (and reset the session later).
  it('memory backend with store latency', async () => {
    let run = 0;
    await check('memory with latency', 300, async () => {
      const stores: Stores = {
        metadataBackend: withLatency(new MemoryBackend(), SEED + run++),
        storageBackend: new MemoryBackend(),
        locker: new MemoryLocker(),
      };
      return makeHarness(stores);
    });
  }, 120_000);

  describe('Redis', () => {
    let client: TestRedisClient;
    let stores: RedisSessionStores;
    let prefix: string;

    beforeAll(async () => {
      client = await connectTestRedis();
      prefix = uniquePrefix('model');
      stores = await createRedisSessionStores({ client, prefix });
    });

    afterAll(async () => {
      await stores?.close();
      if (client?.isOpen) {
        for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) {
          if (keys.length > 0) await client.del(keys.map(String));
        }
        client.destroy();
      }
    });

    it('RedisBackend + RedisLocker', async () => {
      await check('redis', 400, async () => makeHarness(stores));
    }, 180_000);
  });

  describe('PostgreSQL', () => {
    let db: TestDatabase;
    let stores: PostgresSessionStores;

    beforeAll(async () => {
      db = await createTestDatabase();
      stores = await createPostgresSessionStores({ pool: db.pool, prefix: 'model:' });
      await stores.migrate();
    });

    afterAll(async () => {
      await stores?.close();
      await db?.drop();
    });

    it('PostgresBackend + PostgresLocker', async () => {
      await check('postgres', 300, async () => makeHarness(stores));
    }, 180_000);
  });

  // The cluster runs in CI only (it starts three redis-server processes).
  if (process.env.CI === 'true')
    describe('Redis Cluster (CI)', () => {
      let server: RedisClusterServer;
      let cluster: TestRedisCluster;
      let stores: RedisSessionStores;

      beforeAll(async () => {
        server = await RedisClusterServer.start(3);
        cluster = await connectTestCluster(server);
        stores = await createRedisSessionStores({ client: cluster, prefix: uniquePrefix('model') });
      }, 60_000);

      afterAll(async () => {
        await stores?.close();
        if (cluster?.isOpen) cluster.destroy();
        await server?.stop();
      });

      it('RedisBackend + RedisLocker on a cluster', async () => {
        await check('cluster', 150, async () => makeHarness(stores));
      }, 180_000);
    });
});
