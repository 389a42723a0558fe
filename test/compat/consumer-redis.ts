// The Redis side of test/compat/consumer-app.ts with ioredis (5 or 6): the app creates the client and
// hands it over. Compiled in a consumer that has ioredis and not `redis` installed, so the
// declarations of 'nest-session/redis' are checked to name no node-redis type.
import { Redis } from 'ioredis';
import { createRedisSessionStores } from 'nest-session/redis';
import type { ConsumerRedis } from './consumer-app.js';

export const REDIS_CLIENT: string = 'ioredis';

export async function connectRedis(url: string, prefix: string): Promise<ConsumerRedis> {
  const client = new Redis(url, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 });
  await client.connect();
  const stores = await createRedisSessionStores({ client, prefix });
  return {
    stores,
    countKeys: async () => (await client.keys(`${prefix}*`)).length,
    close: async () => {
      await client.quit();
    },
  };
}
