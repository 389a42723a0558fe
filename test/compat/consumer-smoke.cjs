/* eslint-disable @typescript-eslint/no-require-imports, @typescript-eslint/no-extraneous-class -- a CommonJS consumer is what this file tests */
// A CommonJS Nest 11 consumer of the packed library on Node 20 (require(esm)): login, /me, logout
// on Redis through the client named by REDIS_CLIENT (ioredis or node-redis). Run by
// test/compat/consumers.sh in a fresh consumer with its own npm install; not part of `npm test`.
require('reflect-metadata');
const { Module, Controller, Get, Post, Inject, Body, HttpCode } = require('@nestjs/common');
const { NestFactory } = require('@nestjs/core');
const { SessionModule, SessionInterface } = require('nest-session'); // an ESM package, through require(esm)
const { createRedisSessionStores } = require('nest-session/redis');

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `${process.env.CONSUMER_PREFIX ?? `compat-cjs-${process.pid}:`}cjs:`;

async function connectRedis() {
  if (process.env.REDIS_CLIENT === 'ioredis') {
    const { Redis } = require('ioredis');
    const client = new Redis(REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    await client.connect();
    return { client, keys: () => client.keys(`${PREFIX}*`), close: () => client.quit() };
  }
  const { createClient } = require('redis');
  const client = createClient({ url: REDIS_URL });
  client.on('error', () => undefined);
  await client.connect();
  return { client, keys: () => client.keys(`${PREFIX}*`), close: () => client.close() };
}

class AppController {
  constructor(session) {
    this.session = session;
  }
  async login(body) {
    this.session.bindToUser(body.user);
    await this.session.putData('n', 1);
    return { ok: true };
  }
  async me() {
    if (!this.session.isStarted()) return { started: false, user: null, n: null };
    return { started: true, user: this.session.getUserId() ?? null, n: (await this.session.getData('n')) ?? null };
  }
  async logout() {
    await this.session.destroy('logout');
    return { ok: true };
  }
}
Inject(SessionInterface)(AppController, undefined, 0);
const d = (name) => Object.getOwnPropertyDescriptor(AppController.prototype, name);
Post('login')(AppController.prototype, 'login', d('login'));
HttpCode(200)(AppController.prototype, 'login', d('login'));
Body()(AppController.prototype, 'login', 0);
Get('me')(AppController.prototype, 'me', d('me'));
Post('logout')(AppController.prototype, 'logout', d('logout'));
HttpCode(200)(AppController.prototype, 'logout', d('logout'));
Controller()(AppController);

(async () => {
  const redis = await connectRedis();
  const stores = await createRedisSessionStores({ client: redis.client, prefix: PREFIX });
  class AppModule {}
  Module({
    imports: [
      SessionModule.forRoot({
        metadataBackend: stores.metadataBackend,
        storageBackend: stores.storageBackend,
        locker: stores.locker,
        garbageCollection: { cron: false, probability: 0 },
      }),
    ],
    controllers: [AppController],
  })(AppModule);
  const app = await NestFactory.create(AppModule, { logger: ['error', 'warn'] });
  await app.listen(0, '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  const login = await fetch(url + '/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: 'alice' }),
  });
  const cookie = login.headers.get('set-cookie').split(';')[0];
  const inRedis = (await redis.keys()).length;
  const me = await (await fetch(url + '/me', { headers: { cookie } })).json();
  const out = await fetch(url + '/logout', { method: 'POST', headers: { cookie } });
  const after = await (await fetch(url + '/me', { headers: { cookie } })).json();
  console.log(
    JSON.stringify({
      nest: require('@nestjs/core/package.json').version,
      client: process.env.REDIS_CLIENT,
      login: login.status,
      inRedis,
      me,
      logout: out.status,
      cleared: /Max-Age=0/.test(out.headers.get('set-cookie')),
      after,
    }),
  );
  await app.close();
  await redis.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
