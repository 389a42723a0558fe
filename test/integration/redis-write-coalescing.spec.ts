import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { WriteTicket } from '../../lib/cache/write-ticket.js';
import { StoreUnavailableException } from '../../lib/errors/store-unavailable.exception.js';
import { RedisBackend } from '../../lib/redis/redis.backend.js';
import type { RedisLockerClient } from '../../lib/redis/redis.locker.js';
import { createRedisSessionStores, type RedisSessionStores } from '../../lib/redis/redis-session.factory.js';
import { tapCommands } from '../support/redis-command-tap.js';
import { connectTestRedis, TEST_REDIS_URL, uniquePrefix, type TestRedisClient } from '../support/redis.js';

/*
 * Issue 11 on a standalone Redis: a write is one script call with its index upkeep (tag sets of
 * other groups, expiry records) inside, and the writes the metadata and the storage backends of
 * one `createRedisSessionStores` issue in one tick are one call, each applied or refused on its
 * own. The tap records every command the backends send, in order.
 */
describe('Redis writes on a standalone Redis: index upkeep folded in, same-tick writes coalesced', () => {
  const prefix = uniquePrefix('coalesce');
  const sent: string[][] = [];
  let failNext = false;
  let raw: TestRedisClient;
  let stores: RedisSessionStores<RedisLockerClient>;

  beforeAll(async () => {
    raw = await connectTestRedis(TEST_REDIS_URL);
    const client = tapCommands(raw, (send) => {
      if (failNext) {
        failNext = false;
        return Promise.reject(new Error('Socket closed unexpectedly (test)'));
      }
      return send();
    });
    // Records the raw commands (sendCommand's argument), what the backends use.
    const recording = new Proxy(client, {
      get(target, property) {
        const value: unknown = Reflect.get(target, property, target);
        if (property === 'sendCommand') {
          return (args: string[]) => {
            sent.push([...args]);
            return (value as (a: string[]) => Promise<unknown>).call(target, args);
          };
        }
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    stores = await createRedisSessionStores({ client: recording, prefix, commandTimeout: 0 });
    // Scripts loaded once (FUNCTION LOAD rides with the first use): later counts are steady.
    await Promise.all([stores.metadataBackend.set('warm', 'x', ['session'], 60), stores.storageBackend.set('w.a', 'x', ['w'])]);
  });

  beforeEach(() => {
    sent.length = 0;
  });

  afterAll(async () => {
    const keys: string[] = [];
    for await (const batch of raw.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) keys.push(...batch);
    if (keys.length > 0) await raw.del(keys);
    await stores.close();
    await raw.close();
  });

  const scripts = () => sent.filter((command) => ['FCALL', 'EVALSHA', 'EVAL'].includes(command[0]!));

  it('a new session (storage with a creating guard, metadata with tags in other groups) is one FCALL; every index is written', async () => {
    const { metadataBackend: meta, storageBackend: storage } = stores;
    const [stored, written] = await Promise.all([
      storage.write(
        { sets: [{ id: 'st1.cart', data: '3', tags: ['st1'] }] },
        { id: 'st1.~guard', fence: 0, create: true, tags: ['st1'], lifetime: 60 },
      ),
      meta.write({ sets: [{ id: 'h:ab.k1', data: 'meta', tags: ['session', 'storage-st1', 'h:ab'], lifetime: 60 }] }),
    ]);
    expect([stored, written]).toEqual(['ok', 'ok']);
    expect(sent.map((command) => command[0])).toEqual(['FCALL']);
    // The two prefixes are the call's first arguments, once each (the units name them by index):
    // FCALL <function> 1 <routing key> 2 <prefix> <prefix> <units...>.
    expect(sent[0]!.slice(4, 7)).toEqual(['2', `${prefix}m:`, `${prefix}s:`]);
    expect(sent[0]!.slice(7).some((arg) => arg.startsWith(`${prefix}m:`) || arg.startsWith(`${prefix}s:`))).toBe(false);

    expect(await raw.zScore(`${prefix}m:{session}#tag`, 'h:ab.k1')).not.toBeNull();
    expect(await raw.zScore(`${prefix}m:{storage-st1}#tag`, 'h:ab.k1')).not.toBeNull();
    expect(await raw.zScore(`${prefix}m:{h:ab}#tag`, 'h:ab.k1')).not.toBeNull();
    expect(await raw.zScore(`${prefix}m:{}#expiry`, 'h:ab.k1')).not.toBeNull();
    expect(await raw.zScore(`${prefix}s:{}#expiry`, 'st1.~guard')).not.toBeNull();
    expect(await storage.get('st1.cart')).toBe('3');
    expect(await meta.findIdentifiersByTag('storage-st1')).toEqual(['h:ab.k1']);
    // Every key written has a native TTL (lifetime + margin).
    const keys = [
      `${prefix}m:{h:ab}.k1`,
      `${prefix}m:{session}#tag`,
      `${prefix}m:{storage-st1}#tag`,
      `${prefix}m:{}#expiry`,
      `${prefix}s:{st1}.cart`,
      `${prefix}s:{st1}.~guard`,
      `${prefix}s:{st1}#tag`,
      `${prefix}s:{}#expiry`,
    ];
    for (const key of keys) expect([key, (await raw.pTTL(key)) > 0]).toEqual([key, true]);
  });

  it('each write of one call is checked and applied on its own: a refused one does not undo the other', async () => {
    const { metadataBackend: meta, storageBackend: storage } = stores;
    const [refused, applied, conditional] = await Promise.all([
      // No guard entry and no `create`: the session is gone.
      storage.write({ sets: [{ id: 'gone.k', data: 'x', tags: ['gone'] }] }, { id: 'gone.~guard', fence: 5 }),
      meta.write({ sets: [{ id: 'm1', data: 'v', tags: ['session', 'tag-blue'], lifetime: 60 }] }),
      meta.write({ sets: [{ id: 'm2', data: 'v', tags: ['session'], lifetime: 60 }], mustExist: ['m2'] }),
    ]);
    expect([refused, applied, conditional]).toEqual(['missing', 'ok', 'missing']);
    expect(scripts()).toHaveLength(1);
    expect(await storage.get('gone.k')).toBeUndefined();
    expect(await raw.exists(`${prefix}s:{gone}#tag`)).toBe(0);
    expect(await meta.get('m1')).toBe('v');
    expect(await meta.findIdentifiersByTag('tag-blue')).toEqual(['m1']);
    // The refused conditional write left no index record behind (upkeep only after its check).
    expect(await raw.zScore(`${prefix}m:{session}#tag`, 'm2')).toBeNull();
    expect(await raw.zScore(`${prefix}m:{}#expiry`, 'm2')).toBeNull();
  });

  it('a remove is one call and takes the memberships in other groups and the expiry record with it', async () => {
    const meta = stores.metadataBackend;
    await meta.set('m3', 'v', ['session', 'tag-red'], 60);
    sent.length = 0;
    await expect(meta.remove('m3')).resolves.toBe(true);
    expect(sent.map((command) => command[0])).toEqual(['FCALL']);
    expect(await raw.zScore(`${prefix}m:{session}#tag`, 'm3')).toBeNull();
    expect(await raw.zScore(`${prefix}m:{tag-red}#tag`, 'm3')).toBeNull();
    expect(await raw.zScore(`${prefix}m:{}#expiry`, 'm3')).toBeNull();
    await expect(meta.remove('m3')).resolves.toBe(false);
  });

  it('an overwrite drops the tags the entry no longer carries and, without a lifetime, its expiry record', async () => {
    const meta = stores.metadataBackend;
    await meta.set('m4', 'v', ['session', 'tag-old'], 60);
    sent.length = 0;
    await meta.set('m4', 'w', ['session', 'tag-new']);
    expect(scripts()).toHaveLength(1);
    expect(await meta.findIdentifiersByTag('tag-old')).toEqual([]);
    expect(await raw.zScore(`${prefix}m:{tag-old}#tag`, 'm4')).toBeNull();
    expect(await meta.findIdentifiersByTag('tag-new')).toEqual(['m4']);
    expect(await raw.zScore(`${prefix}m:{}#expiry`, 'm4')).toBeNull();
  });

  it('a destroy (metadata removed, storage flushed, issued together) is one call', async () => {
    const { metadataBackend: meta, storageBackend: storage } = stores;
    await storage.write(
      { sets: [{ id: 'st2.a', data: '1', tags: ['st2'] }] },
      { id: 'st2.~guard', fence: 0, create: true, tags: ['st2'], lifetime: 60 },
    );
    await meta.set('m5', 'v', ['session', 'storage-st2'], 60);
    sent.length = 0;
    const [removed, flushed] = await Promise.all([meta.remove('m5'), storage.flushByTag('st2')]);
    expect([removed, flushed]).toEqual([true, 2]);
    expect(sent.map((command) => command[0])).toEqual(['FCALL']);
    expect(await raw.keys(`${prefix}s:{st2}*`)).toEqual([]);
    expect(await raw.zScore(`${prefix}s:{}#expiry`, 'st2.~guard')).toBeNull();
    expect(await raw.zScore(`${prefix}m:{storage-st2}#tag`, 'm5')).toBeNull();
  });

  it('keeps the order of one tick: a read issued after a write goes out after it and sees it', async () => {
    const storage = stores.storageBackend;
    const [, read] = await Promise.all([storage.set('st3.k', 'new', ['st3']), storage.get('st3.k')]);
    expect(read).toBe('new');
    expect(sent.map((command) => command[0])).toEqual(['FCALL', 'GET']);
  });

  it('a tag read right behind a queued write (a storage move: guard check, then the copy) rides in the same call, after it', async () => {
    const storage = stores.storageBackend;
    await storage.write(
      { sets: [{ id: 'st5.a', data: '1', tags: ['st5'] }] },
      { id: 'st5.~guard', fence: 1, create: true, tags: ['st5'] },
    );
    sent.length = 0;
    const [checked, entries] = await Promise.all([
      storage.write({ sets: [{ id: 'st5.b', data: '2', tags: ['st5'] }] }, { id: 'st5.~guard', fence: 2 }),
      storage.getByTag('st5'),
    ]);
    expect(checked).toBe('ok');
    expect(entries.map((e) => `${e.id}=${e.data}`).sort()).toEqual(['st5.a=1', 'st5.b=2', 'st5.~guard=2']);
    expect(sent.map((command) => command[0])).toEqual(['FCALL']);
  });

  it('when the call fails, every write in it fails (StoreUnavailableException) and nothing is half-applied', async () => {
    const { metadataBackend: meta, storageBackend: storage } = stores;
    failNext = true;
    const results = await Promise.allSettled([storage.set('st4.k', 'x', ['st4']), meta.set('m6', 'v', ['session'], 60)]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    for (const r of results) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(StoreUnavailableException);
    expect(await storage.get('st4.k')).toBeUndefined();
    expect(await meta.get('m6')).toBeUndefined();
  });

  it('a RedisBackend constructed alone writes in one call too, index upkeep included', async () => {
    const alone = new RedisBackend({ client: raw, prefix: `${prefix}alone:` });
    await alone.set('a1', 'v', ['group-x', 'group-y'], 60);
    expect(await alone.findIdentifiersByTag('group-y')).toEqual(['a1']);
    expect(await raw.zScore(`${prefix}alone:{}#expiry`, 'a1')).not.toBeNull();
    expect((await alone.collectGarbage()).length).toBe(0);
    await expect(alone.remove('a1')).resolves.toBe(true);
    expect(await alone.findIdentifiersByTag('group-x')).toEqual([]);
    expect(await raw.exists(`${prefix}alone:{}#expiry`)).toBe(0);
  });

  it('a chain (WriteOrder) is one call: each write runs only if the ones it requires applied, the rest answer skipped', async () => {
    const { metadataBackend: meta, storageBackend: storage } = stores;
    await meta.set('c-old', 'v', ['session'], 60);
    sent.length = 0;
    const refused = new WriteTicket();
    const removed = new WriteTicket();
    const [check, written, removal, published, flushed] = await Promise.all([
      // No such guard: refused, so everything that requires it is skipped.
      storage.write({}, { id: 'nochain.~guard', fence: 1 }, { ticket: refused }),
      storage.write(
        { sets: [{ id: 'ch1.a', data: '1', tags: ['ch1'] }] },
        { id: 'ch1.~guard', fence: 0, create: true },
        { after: [refused] },
      ),
      meta.remove('c-old', { after: [refused], ticket: removed }),
      meta.write({ sets: [{ id: 'c-new', data: 'v', tags: ['session'], lifetime: 60 }] }, undefined, { after: [removed] }),
      storage.flushByTag('st-none', { after: [removed] }),
    ]);
    expect([check, written, removal, published, flushed]).toEqual(['missing', 'skipped', false, 'skipped', 0]);
    expect(scripts()).toHaveLength(1);
    expect(await refused.applied).toBe(false);
    expect(await meta.get('c-old')).toBe('v');
    expect(await meta.get('c-new')).toBeUndefined();
    expect(await storage.get('ch1.a')).toBeUndefined();
    expect(await raw.zScore(`${prefix}m:{session}#tag`, 'c-new')).toBeNull();
  });

  it('a chain whose prerequisites apply runs in order within the call', async () => {
    const { metadataBackend: meta, storageBackend: storage } = stores;
    await storage.write(
      { sets: [{ id: 'ch2.a', data: '1', tags: ['ch2'] }] },
      { id: 'ch2.~guard', fence: 3, create: true, tags: ['ch2'] },
    );
    await meta.set('c-old2', 'v', ['session'], 60);
    sent.length = 0;
    const checked = new WriteTicket();
    const removed = new WriteTicket();
    const results = await Promise.all([
      storage.write({}, { id: 'ch2.~guard', fence: 3 }, { ticket: checked }),
      meta.remove('c-old2', { after: [checked], ticket: removed }),
      meta.write({ sets: [{ id: 'c-new2', data: 'v', tags: ['session'], lifetime: 60 }] }, undefined, { after: [removed] }),
      storage.flushByTag('ch2', { after: [removed] }),
    ]);
    expect(results).toEqual(['ok', true, 'ok', 2]);
    expect(scripts()).toHaveLength(1);
    expect(await meta.get('c-old2')).toBeUndefined();
    expect(await meta.get('c-new2')).toBe('v');
    expect(await raw.keys(`${prefix}s:{ch2}*`)).toEqual([]);
  });

  it('a prerequisite sent in an earlier call is waited for (a later call), with the same outcome', async () => {
    const meta = stores.metadataBackend;
    const gone = new WriteTicket();
    await expect(meta.remove('never-there', { ticket: gone })).resolves.toBe(false);
    sent.length = 0;
    await expect(meta.write({ sets: [{ id: 'c-late', data: 'v' }] }, undefined, { after: [gone] })).resolves.toBe('skipped');
    expect(scripts()).toHaveLength(0);
    expect(await meta.get('c-late')).toBeUndefined();
  });
});
