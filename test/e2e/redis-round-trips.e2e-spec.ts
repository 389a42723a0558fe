import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { createSampleApp, type HttpAdapterName } from '../../sample-app/app.factory.js';
import { Browser } from '../support/http.js';
import { CommandRecorder, isWrite, RedisServer, type RoundTripCommand } from '../support/redis-server.js';
import { fakeOnlyDate } from '../support/fake-date.js';

/**
 * What a request costs in Redis, counted from MONITOR on a private redis-server while the
 * sample app (SESSION_BACKEND=redis, through createRedisSessionStores) serves real HTTP. Every
 * command a client sends is one entry (node-redis may pipeline several into one round trip, so
 * commands are an upper bound of round trips); what a Lua script runs is listed under it.
 */
const PREFIX = 'rt:';

type Area = 'metadata' | 'storage' | 'lock' | 'other';

/** The area of the key a command is routed by (a script's first key, else its first argument). */
function areaOf(command: RoundTripCommand): Area {
  const name = command.args[0]?.toUpperCase();
  const text = (name === 'EVALSHA' || name === 'EVAL' || name === 'FCALL' ? command.args[3] : command.args[1]) ?? '';
  if (text.includes(`${PREFIX}l:`)) return 'lock';
  if (text.includes(`${PREFIX}m:`)) return 'metadata';
  if (text.includes(`${PREFIX}s:`)) return 'storage';
  return 'other';
}

/** `GET metadata`, `EVALSHA storage write`, ...: one line per command, in order. */
function describeCommands(commands: RoundTripCommand[]): string[] {
  return commands.map((c) => `${c.args[0]} ${areaOf(c)}${isWrite(c) ? ' write' : ''}`);
}

/**
 * A commit that writes metadata: the check that the metadata is unchanged since the resume, the
 * guarded storage write (refreshing the guard's lifetime), then the conditional metadata write,
 * chained (each only if the one before applied) in one script call of the backends' write
 * coalescer, routed by the first (the metadata check). On a standalone
 * Redis each write's tag-set memberships and expiry records are written inside that call (on a
 * cluster they live in other slots and are separate commands).
 */
const UNLOCKED_METADATA_COMMIT = ['FCALL metadata write'];

/**
 * A new session: the storage write (creating guard) and the metadata write are issued in one
 * tick, so the backends' write coalescer sends them as one script call, routed by the first.
 */
const NEW_SESSION_WRITE = ['FCALL storage write'];

function cost(commands: RoundTripCommand[]) {
  const cache = commands.filter((c) => areaOf(c) === 'metadata' || areaOf(c) === 'storage');
  return {
    cacheReads: cache.filter((c) => !isWrite(c)).length,
    cacheWrites: cache.filter((c) => isWrite(c)).length,
    lock: commands.filter((c) => areaOf(c) === 'lock').length,
    other: commands.filter((c) => areaOf(c) === 'other').length,
  };
}

let server: RedisServer;
let recorder: CommandRecorder;

beforeAll(async () => {
  server = await RedisServer.start();
  recorder = await CommandRecorder.attach(server.url);
});
afterAll(async () => {
  await recorder?.close();
  await server?.stop();
});

describe.each<HttpAdapterName>(['express', 'fastify'])('Redis commands per request through the sample app on %s', (adapter) => {
  let app: INestApplication;

  beforeAll(async () => {
    app = await createSampleApp(adapter, {
      redis: { url: server.url, prefix: PREFIX },
      // No probabilistic or scheduled GC: only the request's own commands are counted.
      session: { updateGracePeriod: 60, garbageCollection: { probability: 0, cron: false } },
    });
  });
  afterAll(async () => {
    await app?.close();
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  /** A stored session with two keys; every script was used once (SCRIPT LOAD is not counted below). */
  async function storedSession(): Promise<Browser> {
    const browser = new Browser(app);
    expect((await browser.put('/session/data/a', { value: 1 })).status).toBe(200);
    expect((await browser.put('/session/data/b', { value: 2 })).status).toBe(200);
    expect((await browser.get('/session')).status).toBe(200);
    expect((await browser.post('/counter/warm/increment?lock=1')).status).toBe(200);
    return browser;
  }

  it('resuming a session and reading its data: 2 commands (GET metadata, one script reading all data entries), no write, no lock', async () => {
    const browser = await storedSession();
    let body: unknown;
    const commands = await recorder.between(async () => {
      body = (await browser.get('/session')).body;
    });
    expect(body).toMatchObject({ started: true, data: { a: 1, b: 2 } });
    expect(describeCommands(commands)).toEqual(['GET metadata', 'EVALSHA storage']);
  });

  it('a request that changes nothing within the grace period: no write (resuming alone is 1 GET)', async () => {
    const browser = await storedSession();
    const commands = await recorder.between(async () => {
      expect((await browser.get('/health')).status).toBe(200);
    });
    expect(describeCommands(commands)).toEqual(['GET metadata']);
  });

  it('committing a changed key: 1 write, no lock commands (the write script checks that nobody holds the lock)', async () => {
    const browser = await storedSession();
    const commands = await recorder.between(async () => {
      expect((await browser.put('/session/data/a', { value: 42 })).status).toBe(200);
    });
    // The handler reads the key before writing it: the resume's 2 reads, then the commit.
    expect(describeCommands(commands)).toEqual([
      'GET metadata',
      'GET storage', // the handler reads one key: a plain GET
      'FCALL storage write', // lock free? fresh fence, guard, entry: one script
    ]);
    expect(cost(commands)).toEqual({ cacheReads: 2, cacheWrites: 1, lock: 0, other: 0 });
    const script = commands.at(-1)!.args.join(' ');
    expect(script).toContain(`${PREFIX}l:lock:{`); // the lock it checked, in the storage's hash tag
    expect((await browser.get('/session')).body.data).toEqual({ a: 42, b: 2, warm: 1 });
  });

  it('a read-modify-write under the session lock (open()): the metadata is read again under the lock, then 1 write', async () => {
    const browser = await storedSession();
    const commands = await recorder.between(async () => {
      expect((await browser.post('/counter/n/increment?lock=1')).body).toEqual({ key: 'n', value: 1 });
    });
    // Aerys' open(): lock, then read fresh. The resume's GET (before the handler knew it would
    // lock) is repeated under the lock. Under the lock, one tick: the new fence onto the guard
    // (an older holder whose lock expired can no longer write), the metadata and the data.
    expect(describeCommands(commands)).toEqual([
      'GET metadata',
      'EVALSHA lock write',
      'FCALL storage write',
      'GET metadata',
      'EVALSHA storage',
      'FCALL storage write',
      'EVALSHA lock write',
    ]);
  });

  it('once the grace period has passed: an unchanged session is rewritten once (metadata only), a changed one writes data and metadata', async () => {
    const browser = await storedSession();
    fakeOnlyDate();
    jest.setSystemTime(Date.now() + 61_000);
    const touch = await recorder.between(async () => {
      expect((await browser.get('/session')).status).toBe(200);
    });
    // Nobody holds the lock: one call checks that the metadata is still what the resume read (a
    // concurrent login or tag change would send the commit under the lock, where the metadata is
    // re-read and merged), that the lock is free (the guarded storage write draws a fresh fence
    // and refreshes the guard's lifetime), then writes the metadata. No lock commands.
    expect(describeCommands(touch)).toEqual(['GET metadata', 'EVALSHA storage', ...UNLOCKED_METADATA_COMMIT]);
    expect(cost(touch).lock).toBe(0);
    const again = await recorder.between(async () => {
      expect((await browser.get('/session')).status).toBe(200);
    });
    expect(cost(again).cacheWrites).toBe(0); // within the new grace period

    jest.setSystemTime(Date.now() + 61_000);
    const change = await recorder.between(async () => {
      expect((await browser.put('/session/data/b', { value: 3 })).status).toBe(200);
    });
    expect(describeCommands(change)).toEqual(['GET metadata', 'GET storage', ...UNLOCKED_METADATA_COMMIT]);
  });

  it('a login of a stored session costs 2 round trips: the resume, then one call (no lock commands: nobody held the lock)', async () => {
    const browser = await storedSession();
    const login = await recorder.between(async () => {
      expect((await browser.post('/auth/login', { user: 'ann' })).status).toBe(200);
    });
    // The resume reads the metadata; the call checks the old storage's lock free and the metadata
    // unchanged, copies the data to the new storage id server-side, removes the old id, publishes
    // the new one and flushes the old storage (routed by its first unit, the metadata check).
    expect(describeCommands(login)).toEqual(['GET metadata', 'FCALL metadata write']);
    expect(cost(login).lock).toBe(0);
    // The old storage's lock is checked inside the copy: no fence is drawn for a storage the
    // same call flushes (no TIME, no SET of its lock's fence counter or of its guard).
    const inner = login[1]!.scriptCommands;
    expect(inner.filter((c) => c.args[0] === 'TIME')).toEqual([]);
    expect(
      inner.filter((c) => c.args[0] === 'SET' && /:fence$|\.~guard$/.test(c.args[1] ?? '') && !c.args[2]?.endsWith('\n0')),
    ).toEqual([]);
    const data = await browser.get('/session');
    expect(data.status).toBe(200);
    expect(data.body).toMatchObject({ data: { a: 1, b: 2 } });
  });

  it('a new session costs 1 round trip (data with its guard and the metadata, sent in one tick) and no lock (nobody else knows its id yet); a visitor who stores nothing costs nothing', async () => {
    const visitor = await recorder.between(async () => {
      expect((await new Browser(app).get('/session')).status).toBe(200);
    });
    expect(visitor).toEqual([]);
    const browser = new Browser(app);
    const created = await recorder.between(async () => {
      expect((await browser.put('/session/data/a', { value: 1 })).status).toBe(200);
    });
    expect(describeCommands(created)).toEqual(NEW_SESSION_WRITE);
    // The one call carries both writes: the metadata write's unit names the metadata tags.
    expect(created[0]!.args.join(' ')).toContain('storage-');
  });
});
