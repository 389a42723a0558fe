import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createRequire } from 'node:module';
import { Redis } from 'ioredis';
import { Redis as Redis6 } from 'ioredis6';
import { createClient as createClient6 } from 'redis6';
import { ConnectRedisLoader, InvalidOptionException, type ConnectRedisClient } from 'nest-session';
import { unsignExpressSessionCookie } from '../../lib/legacy/express-session-cookie.js';
import { resolveLegacySessionOptions } from '../../lib/legacy/legacy-session.options.js';
import { connectTestRedis, TEST_REDIS_URL, uniquePrefix, type TestRedisClient } from '../support/redis.js';

/** express-session's own signer (a dependency of express-session), to check ours against it. */
const signature = createRequire(import.meta.url)('cookie-signature') as { sign(value: string, secret: string): string };

describe('express-session cookie signatures', () => {
  const sid = 'u8Tq3fW0cEJc8fBbrOKmFQ5sM2-v3R_x';
  const cookie = (secret: string) => encodeURIComponent('s:' + signature.sign(sid, secret));

  it('accepts what cookie-signature signs, with any of the secrets', () => {
    expect(unsignExpressSessionCookie(cookie('a'), ['a'])).toBe(sid);
    expect(unsignExpressSessionCookie(cookie('old'), ['new', 'old'])).toBe(sid);
    expect(unsignExpressSessionCookie(decodeURIComponent(cookie('a')), ['a'])).toBe(sid); // not URL-encoded
  });

  it('refuses other secrets, tampered ids, missing prefixes and malformed values', () => {
    expect(unsignExpressSessionCookie(cookie('a'), ['b'])).toBeUndefined();
    const [, sig] = decodeURIComponent(cookie('a')).split('.');
    expect(unsignExpressSessionCookie(encodeURIComponent(`s:${sid}x.${sig!}`), ['a'])).toBeUndefined();
    expect(unsignExpressSessionCookie(encodeURIComponent(signature.sign(sid, 'a')), ['a'])).toBeUndefined();
    expect(unsignExpressSessionCookie(`${cookie('a')}%`, ['a'])).toBeUndefined();
    expect(unsignExpressSessionCookie('s%3A.abc', ['a'])).toBeUndefined();
    expect(unsignExpressSessionCookie(cookie('a').slice(0, -2), ['a'])).toBeUndefined();
  });
});

describe('ConnectRedisLoader on each Redis client', () => {
  let node5: TestRedisClient;
  let node6: ReturnType<typeof createClient6>;
  let io: Redis;
  let io6: Redis6;
  const prefix = uniquePrefix('legacy-loader');

  beforeAll(async () => {
    node5 = await connectTestRedis();
    node6 = createClient6({ url: TEST_REDIS_URL });
    await node6.connect();
    io = new Redis(TEST_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await io.connect();
    io6 = new Redis6(TEST_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await io6.connect();
  });
  afterAll(async () => {
    const keys = await node5.keys(`${prefix}*`);
    if (keys.length > 0) await node5.del(keys);
    await Promise.all([node5.close(), node6.close(), io.quit(), io6.quit()]);
  });

  const clients = (): Array<[string, ConnectRedisClient]> => [
    ['node-redis 5', node5],
    ['node-redis 6', node6],
    ['ioredis 5', io],
    ['ioredis 6', io6],
  ];

  it.each(['node-redis 5', 'node-redis 6', 'ioredis 5', 'ioredis 6'])(
    '%s: takes an entry once, of parallel takes exactly one wins',
    async (name) => {
      const client = clients().find(([n]) => n === name)![1];
      const loader = new ConnectRedisLoader({ client, prefix });
      const sid = `sid-${name.replace(/\W/g, '')}`;
      await node5.set(prefix + sid, JSON.stringify({ cookie: { path: '/' }, n: 1 }), { expiration: { type: 'EX', value: 60 } });
      const takes = await Promise.all([loader.take(sid), loader.take(sid), loader.take(sid)]);
      expect(takes.filter((t) => t !== undefined)).toEqual([{ cookie: { path: '/' }, n: 1 }]);
      expect(await node5.exists(prefix + sid)).toBe(0);
      expect(await loader.take('unknown')).toBeUndefined();
    },
  );

  it('uses the configured serializer and ignores what is no session', async () => {
    const loader = new ConnectRedisLoader({
      client: node5,
      prefix,
      serializer: { parse: (t) => JSON.parse(t.slice(1)) as unknown },
    });
    await node5.set(`${prefix}custom`, '#' + JSON.stringify({ cookie: {}, a: 2 }));
    expect(await loader.take('custom')).toEqual({ cookie: {}, a: 2 });
    await node5.set(`${prefix}nocookie`, '#{"a":1}');
    expect(await loader.take('nocookie')).toBeUndefined();
    await node5.set(`${prefix}corrupt`, 'not json');
    expect(await loader.take('corrupt')).toBeUndefined();
  });

  it('names the supported clients for anything else', () => {
    expect(() => new ConnectRedisLoader({ client: {} as ConnectRedisClient })).toThrow(InvalidOptionException);
    expect(() => new ConnectRedisLoader({ client: {} as ConnectRedisClient })).toThrow(/node-redis 5 or 6.*ioredis 5 or 6/);
  });
});

describe('the legacy option', () => {
  const loader = { take: () => Promise.resolve(undefined) };

  it('follows a takeover for 10 s by default, and takes 0 to 300', () => {
    expect(resolveLegacySessionOptions({ secrets: 's', loader })!.graceSeconds).toBe(10);
    expect(resolveLegacySessionOptions({ secrets: 's', loader, graceSeconds: 0 })!.graceSeconds).toBe(0);
    expect(resolveLegacySessionOptions({ secrets: 's', loader, graceSeconds: 300 })!.graceSeconds).toBe(300);
  });

  it.each([-1, 301, 1.5, Number.NaN, '10'])('refuses graceSeconds %p, naming it', (graceSeconds) => {
    expect(() => resolveLegacySessionOptions({ secrets: 's', loader, graceSeconds: graceSeconds as number })).toThrow(
      expect.objectContaining({ constructor: InvalidOptionException, message: expect.stringContaining('legacy.graceSeconds') }),
    );
  });
});
