import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { RESP_TYPES } from 'redis';
import request, { type Response } from 'supertest';
import { SessionManager, userTag } from 'nest-session';
import { createSampleApp } from '../../sample-app/app.factory.js';
import { handleOf, metadataKeyOf } from '../../lib/session/session-key.js';
import { Browser, setCookies } from '../support/http.js';
import { fakeOnlyDate } from '../support/fake-date.js';
import { connectTestRedis, type TestRedisClient } from '../support/redis.js';
import { CommandRecorder, RedisServer, type RoundTripCommand } from '../support/redis-server.js';

/*
 * Issue 11 item 10, "ids are hashed at rest": after a mixed workload through real HTTP (create,
 * write, bags, locks, login = renewal + storage move, tags, remote writes, destroy by handle, by
 * tag and by logout, GC) nothing Redis holds or was told contains a session id handed out as a
 * cookie: no key name, no value of any type (GET/SMEMBERS/ZRANGE/HGETALL/LRANGE and the raw DUMP),
 * no command seen by MONITOR (including the commands scripts ran), no SLOWLOG entry.
 */

const TOKEN = 'ids-at-rest-admin-token';
const TIMEOUT = 600;

describe('ids are hashed at rest on Redis (issue 11 item 10)', () => {
  let server: RedisServer;
  let recorder: CommandRecorder;
  let client: TestRedisClient;
  let app: INestApplication;
  /** Every session id a response handed out as a cookie. */
  const handedOut = new Set<string>();
  let commands: RoundTripCommand[] = [];
  let liveCookie: string;

  const seen = (res: Response): Response => {
    for (const cookie of setCookies(res).values()) if (cookie.value !== '') handedOut.add(cookie.value);
    return res;
  };
  const admin = (method: 'get' | 'post' | 'delete', path: string) =>
    request(app.getHttpServer())[method](path).set('x-admin-token', TOKEN);

  beforeAll(async () => {
    server = await RedisServer.start();
    client = await connectTestRedis(server.url);
    // Log every command in SLOWLOG, and keep DUMP payloads uncompressed so that a search of
    // their bytes is meaningful.
    await client.configSet({ 'slowlog-log-slower-than': '0', 'slowlog-max-len': '100000', rdbcompression: 'no' });
    recorder = await CommandRecorder.attach(server.url);
    app = await createSampleApp('express', {
      adminToken: TOKEN,
      redis: { url: server.url, prefix: 'atrest:' },
      session: { inactivityTimeout: TIMEOUT, updateGracePeriod: 0, garbageCollection: { probability: 0, cron: false } },
    });
    commands = await recorder.between(workload);
  }, 60_000);

  afterAll(async () => {
    jest.useRealTimers();
    await app?.close();
    await recorder?.close();
    client?.destroy();
    await server?.stop();
  });

  async function workload(): Promise<void> {
    fakeOnlyDate();
    try {
      // Sessions that expire and are collected.
      const doomed = new Browser(app);
      seen(await doomed.put('/session/data/a', { value: 1 }));
      seen(await doomed.post('/flash', { type: 'info', message: 'soon gone' }));
      const doomedUser = new Browser(app);
      seen(await doomedUser.put('/session/data/cart', { value: ['x'] }));
      seen(await doomedUser.post('/auth/login', { user: 'dora' }));
      jest.setSystemTime(Date.now() + (TIMEOUT + 1) * 1000);
      const gc = await admin('post', '/admin/gc');
      expect(gc.body).toEqual({ removed: 2 });

      // Live sessions: data, bags, locks, login (renewal + storage move), more writes.
      const alice = new Browser(app);
      seen(await alice.put('/session/data/x', { value: 'one' }));
      seen(await alice.get('/session'));
      seen(await alice.post('/counter/n/increment?lock=1'));
      seen(await alice.post('/counter/n/increment-locked'));
      seen(await alice.post('/flash', { type: 'success', message: 'hi' }));
      seen(await alice.get('/flash'));
      seen(await alice.post('/cart', { sku: 'ABC-1', quantity: 2 }));
      const preLogin = alice.cookie!;
      seen(await alice.post('/auth/login', { user: 'alice' }));
      expect(alice.cookie).not.toBe(preLogin);
      seen(await alice.put('/session/data/y', { value: 'two' }));
      expect(seen(await alice.get('/session')).body).toMatchObject({ started: true, user: 'alice' });

      // Tags and remote writes through SessionManager: by handle (a listing) and by the real id.
      const bob = new Browser(app);
      seen(await bob.put('/session/data/k', { value: 1 }));
      seen(await bob.post('/auth/login', { user: 'bob' }));
      const manager = app.get(SessionManager);
      for (const session of await manager.getSessionsForUser('bob')) await session.addTag('vip');
      const listed = await admin('get', '/admin/sessions?tag=vip');
      expect(listed.body.sessions).toHaveLength(1);
      const remote = (await manager.getSessionByHandle(listed.body.sessions[0].handle as string))!;
      await remote.putData('note', 'written by an admin');
      await (await manager.getSession(bob.cookie!))!.putData('other', 2);
      expect(seen(await bob.get('/session')).body.data).toMatchObject({ note: 'written by an admin', other: 2 });

      // Destroyed: by handle ("revoke this device"), by tag, by logout.
      const carl = new Browser(app);
      seen(await carl.put('/session/data/k', { value: 1 }));
      seen(await carl.post('/auth/login', { user: 'carl' }));
      const carlHandle = handleOf(metadataKeyOf(carl.cookie!));
      expect((await admin('delete', `/admin/sessions/${carlHandle}`)).body).toEqual({ destroyed: 1 });
      const fay = new Browser(app);
      seen(await fay.put('/session/data/k', { value: 1 }));
      seen(await fay.post('/auth/login', { user: 'fay' }));
      expect((await admin('delete', `/admin/sessions?tag=${userTag('fay')}`)).body).toEqual({ destroyed: 1 });
      const eve = new Browser(app);
      seen(await eve.put('/session/data/k', { value: 1 }));
      seen(await eve.post('/auth/logout'));
      // A listing of everything, and an explicit renewal-free write after all that.
      expect((await admin('get', '/admin/sessions')).body.sessions.length).toBeGreaterThanOrEqual(2);
      seen(await alice.put('/session/data/z', { value: 3 }));
      liveCookie = alice.cookie!;
    } finally {
      jest.useRealTimers();
    }
  }

  /** The first handed-out id that `text` contains, if any. */
  function idIn(text: string): string | undefined {
    for (const id of handedOut) if (text.includes(id)) return id;
    return undefined;
  }

  it('handed out enough ids for the check to mean something, and the live sessions are stored', async () => {
    expect(handedOut.size).toBeGreaterThanOrEqual(10);
    // The live session is there, under a digest of its id, and indexed by its handle.
    const key = metadataKeyOf(liveCookie);
    expect(await client.exists(`atrest:m:{${key.slice(0, key.indexOf('.'))}}${key.slice(key.indexOf('.'))}`)).toBe(1);
    expect(await client.exists(`atrest:m:{h:${handleOf(key)}}#tag`)).toBe(1);
  });

  it('no key name and no value (any type, and the raw DUMP) contains a session id', async () => {
    const found: string[] = [];
    let keys = 0;
    const binary = client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
    for await (const batch of client.scanIterator({ MATCH: '*', COUNT: 1000 })) {
      for (const key of batch.map(String)) {
        keys++;
        if (idIn(key) !== undefined) found.push(`key name ${key}`);
        const type = await client.type(key);
        let values: string[];
        if (type === 'string') values = [String(await client.get(key))];
        else if (type === 'set') values = (await client.sMembers(key)).map(String);
        else if (type === 'zset') values = (await client.zRange(key, 0, -1)).map(String);
        else if (type === 'hash')
          values = Object.entries(await client.hGetAll(key))
            .flat()
            .map(String);
        else if (type === 'list') values = (await client.lRange(key, 0, -1)).map(String);
        else values = [];
        for (const value of values) if (idIn(value) !== undefined) found.push(`${type} value of ${key}`);
        const dump = (await binary.dump(key)) as Buffer | null;
        if (dump !== null && idIn(dump.toString('latin1')) !== undefined) found.push(`DUMP of ${key}`);
      }
    }
    expect(keys).toBeGreaterThan(10);
    expect(found).toEqual([]);
  });

  it("leaves no lock fence counter of a storage that is gone (logins, destroys and GC flush their old storage's counter)", async () => {
    const counters: string[] = [];
    for await (const batch of client.scanIterator({ MATCH: 'atrest:l:lock:{*}:fence', COUNT: 1000 }))
      counters.push(...batch.map(String));
    // The locked increments drew fences (a counter each), and alice's login moved that storage away.
    const orphaned: string[] = [];
    for (const key of counters) {
      const storageId = key.slice(key.indexOf('{') + 1, key.indexOf('}'));
      // The GC lock's counter (one key, not a storage).
      if (storageId === '~gc') continue;
      if ((await client.exists(`atrest:s:{${storageId}}.~guard`)) === 0) orphaned.push(key);
    }
    expect(orphaned).toEqual([]);
  });

  it('no command Redis received (MONITOR, scripts included) and no SLOWLOG entry contains a session id', async () => {
    expect(commands.length).toBeGreaterThan(50);
    const leaks: string[] = [];
    for (const command of commands) {
      for (const line of [command, ...command.scriptCommands]) {
        if (idIn(line.args.join(' ')) !== undefined) leaks.push(line.args.slice(0, 3).join(' '));
      }
    }
    expect(leaks).toEqual([]);
    const slowlog = JSON.stringify(await client.sendCommand(['SLOWLOG', 'GET', '-1']));
    expect(slowlog.length).toBeGreaterThan(1000);
    expect(idIn(slowlog)).toBeUndefined();
  });
});
