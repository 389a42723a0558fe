/* eslint-disable @typescript-eslint/no-require-imports, @typescript-eslint/no-extraneous-class -- a CommonJS consumer is what this file tests */
// A CommonJS Nest 11 consumer of the packed library on Node 20 (require(esm)): login, /me, logout.
// Run by test/compat/nest11.sh in a temporary directory with its own npm install; not part of `npm test`.
require('reflect-metadata');
const { Module, Controller, Get, Post, Inject, Body } = require('@nestjs/common');
const { NestFactory } = require('@nestjs/core');
const { SessionModule, SessionInterface } = require('nest-session'); // an ESM package, through require(esm)

class AppController {
  constructor(session) {
    this.session = session;
  }
  async login(body) {
    this.session.bindToUser(body.user);
    await this.session.putData('n', 1);
    return { ok: true };
  }
  me() {
    return { started: this.session.isStarted(), user: this.session.isStarted() ? (this.session.getUserId() ?? null) : null };
  }
  async logout() {
    await this.session.destroy('logout');
    return { ok: true };
  }
}
Inject(SessionInterface)(AppController, undefined, 0);
const d = (name) => Object.getOwnPropertyDescriptor(AppController.prototype, name);
Post('login')(AppController.prototype, 'login', d('login'));
Body()(AppController.prototype, 'login', 0);
Get('me')(AppController.prototype, 'me', d('me'));
Post('logout')(AppController.prototype, 'logout', d('logout'));
Controller()(AppController);
class AppModule {}
Module({
  imports: [SessionModule.forRoot({ garbageCollection: { cron: false, probability: 0 } })],
  controllers: [AppController],
})(AppModule);

(async () => {
  const app = await NestFactory.create(AppModule, { logger: ['error', 'warn'] });
  await app.listen(0, '127.0.0.1');
  const url = await app.getUrl();
  const login = await fetch(url + '/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: 'alice' }),
  });
  const cookie = login.headers.get('set-cookie').split(';')[0];
  const me = await (await fetch(url + '/me', { headers: { cookie } })).json();
  const out = await fetch(url + '/logout', { method: 'POST', headers: { cookie } });
  const after = await (await fetch(url + '/me', { headers: { cookie } })).json();
  console.log(
    JSON.stringify({
      nest: require('@nestjs/core/package.json').version,
      login: login.status,
      me,
      logout: out.status,
      cleared: /Max-Age=0/.test(out.headers.get('set-cookie')),
      after,
    }),
  );
  await app.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
