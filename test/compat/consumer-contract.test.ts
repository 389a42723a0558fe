// A trimmed e2e contract run by test/compat/consumers.sh with `node --test` against the packed
// library in each fresh consumer (Nest 11 and 12, ioredis and node-redis): login, read and
// logout, locked increments, a flash message, regenerate, all over real HTTP on Redis. (node:test's
// describe/it return promises the runner awaits itself: hence `void`.)
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startConsumerApp, type ConsumerApp } from './consumer-app.js';

/** A cookie jar of one: the session cookie, dropped when the server expires it. */
class Browser {
  private cookie: string | undefined;

  constructor(private readonly base: string) {}

  get sessionCookie(): string | undefined {
    return this.cookie;
  }

  /** Sends with a given cookie instead of the jar's (a replayed, stolen or stale one). */
  async send(method: string, path: string, body?: unknown, cookie = this.cookie): Promise<{ status: number; body: unknown }> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (cookie !== undefined) headers.cookie = cookie;
    const response = await fetch(this.base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const set = response.headers.get('set-cookie');
    if (set !== null && cookie === this.cookie) {
      this.cookie = /Max-Age=0/i.test(set) ? undefined : set.split(';')[0];
    }
    const text = await response.text();
    return { status: response.status, body: text === '' ? undefined : (JSON.parse(text) as unknown) };
  }
}

void describe('the packed library in a fresh consumer, over HTTP on Redis', () => {
  let app: ConsumerApp;

  before(async () => {
    const prefix = process.env.CONSUMER_PREFIX ?? `compat-${process.pid}:`;
    app = await startConsumerApp(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', prefix);
    console.log(JSON.stringify({ nest: app.nest, client: app.client }));
  });
  after(async () => {
    await app.close();
  });

  void it('logs in, reads the session back, logs out (cookie expired, the old cookie starts nothing)', async () => {
    const browser = new Browser(app.url);
    assert.deepEqual((await browser.send('GET', '/me')).body, { started: false, user: null, greeting: null });
    const before = await app.countKeys();
    assert.equal((await browser.send('POST', '/login', { user: 'alice' })).status, 200);
    const cookie = browser.sessionCookie;
    assert.ok(cookie !== undefined, 'login sets a cookie');
    assert.ok((await app.countKeys()) > before, 'the session is stored in Redis');
    assert.deepEqual((await browser.send('GET', '/me')).body, { started: true, user: 'alice', greeting: 'hello alice' });
    assert.equal((await browser.send('POST', '/logout')).status, 200);
    assert.equal(browser.sessionCookie, undefined, 'logout expires the cookie');
    assert.deepEqual((await browser.send('GET', '/me', undefined, cookie)).body, { started: false, user: null, greeting: null });
  });

  void it('loses no increment of 20 parallel requests under @SessionLock()', async () => {
    const browser = new Browser(app.url);
    assert.deepEqual((await browser.send('POST', '/counter')).body, { counter: 1 });
    const replies = await Promise.all(Array.from({ length: 20 }, () => browser.send('POST', '/counter')));
    assert.deepEqual(replies.map((r) => r.status).sort(), Array<number>(20).fill(200));
    const counters = replies.map((r) => (r.body as { counter: number }).counter).sort((a, b) => a - b);
    assert.deepEqual(
      counters,
      Array.from({ length: 20 }, (_, i) => i + 2),
    );
  });

  void it('shows a flash message once (FlashBag)', async () => {
    const browser = new Browser(app.url);
    await browser.send('POST', '/flash', { message: 'saved' });
    assert.deepEqual((await browser.send('GET', '/flash')).body, { info: ['saved'] });
    assert.deepEqual((await browser.send('GET', '/flash')).body, {});
  });

  void it('regenerate(true): a new id keeps the data, the old id is dead', async () => {
    const browser = new Browser(app.url);
    await browser.send('POST', '/login', { user: 'bob' });
    const old = browser.sessionCookie;
    assert.deepEqual((await browser.send('POST', '/regenerate')).body, { regenerated: true });
    assert.ok(browser.sessionCookie !== undefined && browser.sessionCookie !== old, 'a new cookie');
    assert.deepEqual((await browser.send('GET', '/me')).body, { started: true, user: 'bob', greeting: 'hello bob' });
    assert.deepEqual((await browser.send('GET', '/me', undefined, old)).body, { started: false, user: null, greeting: null });
  });
});
