import { afterAll, beforeAll } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { createRedisSessionStores } from '../../lib/redis/redis-session.factory.js';
import { sessionManagerContract } from '../contract/session-manager.contract.js';
import { connectTestRedis, uniquePrefix, type TestRedisClient } from '../support/redis.js';

/** The SessionManager suite (remote sessions, tags, users, expiry, GC and its lock, events) on Redis. */
let client: TestRedisClient;

beforeAll(async () => {
  Logger.overrideLogger(['error', 'warn']);
  client = await connectTestRedis();
});
afterAll(async () => {
  await client?.close();
});

async function keysMatching(pattern: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const batch of client.scanIterator({ MATCH: pattern, COUNT: 1000 })) keys.push(...batch);
  return keys;
}

sessionManagerContract(
  'redis',
  async () => {
    // A fresh prefix per test: no entry of any other test is visible.
    const prefix = uniquePrefix('manager');
    const stores = await createRedisSessionStores({ client, prefix });
    return {
      metadataBackend: stores.metadataBackend,
      storageBackend: stores.storageBackend,
      locker: stores.locker,
      cleanup: async () => {
        await stores.close();
        const keys = await keysMatching(`${prefix}*`);
        if (keys.length > 0) await client.del(keys);
      },
      // Tag sets of the metadata cache (`<prefix>m:{tag}#tag`); Redis drops a set with its last member.
      storedTagCount: async () => (await keysMatching(`${prefix}m:{*}#tag`)).length,
    };
  },
  { realTime: true },
);
