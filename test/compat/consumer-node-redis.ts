// The Redis side of test/compat/consumer-app.ts with node-redis (`redis@latest`): consumers.sh
// copies this file over consumer-redis.ts in a consumer that has `redis` and not ioredis installed.
import { createClient } from 'redis';
import { createRedisSessionStores } from 'nest-session/redis';
import type { ConsumerRedis } from './consumer-app.js';

export const REDIS_CLIENT: string = 'node-redis';

export async function connectRedis(url: string, prefix: string): Promise<ConsumerRedis> {
  const client = createClient({ url });
  client.on('error', () => undefined); // failures surface through the awaited calls
  await client.connect();
  // The client's own type flows through: `stores.client` is this node-redis client.
  const stores = await createRedisSessionStores({ client, prefix });
  return {
    stores,
    countKeys: async () => (await stores.client.keys(`${prefix}*`)).length,
    close: async () => {
      await client.close();
    },
  };
}
