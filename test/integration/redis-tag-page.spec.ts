import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { RedisBackend, type RedisCommandClient } from '../../lib/redis/redis.backend.js';
import { connectTestRedis, uniquePrefix, type TestRedisClient } from '../support/redis.js';

let client: TestRedisClient;
const prefix = uniquePrefix('tagpage');

beforeAll(async () => {
  client = await connectTestRedis();
});

afterAll(async () => {
  await new RedisBackend({ client, prefix }).flush();
  await client?.close();
});

it('one page of 10 over 5,000 members sends and receives O(page) ids', async () => {
  const backend = new RedisBackend({ client, prefix });
  const ids = Array.from({ length: 5000 }, (_, i) => `s${i}.meta`);
  await backend.write({ sets: ids.map((id) => ({ id, data: 'x', tags: ['all'] })) });

  const commands: string[][] = [];
  const recording: RedisCommandClient = {
    sendCommand: (args: readonly string[]) => {
      commands.push([...args]);
      return client.sendCommand([...args]);
    },
  };
  const paged = new RedisBackend({ client: recording, prefix });
  const page = await paged.findIdentifiersByTagPage('all', undefined, 10);
  expect(page.cursor).toBeDefined();
  expect(page.ids.length).toBeGreaterThan(0);
  expect(page.ids.length).toBeLessThanOrEqual(30);
  // No command argument list mentions more than ~a page of entry keys.
  for (const args of commands) expect(args.filter((a) => a.includes('.meta')).length).toBeLessThanOrEqual(30);
  expect(commands.some((args) => args[0] === 'MGET')).toBe(true);
});
