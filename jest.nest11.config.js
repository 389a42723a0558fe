/**
 * `npm run test:nest11`: the e2e suites that state the library's contract over HTTP, run on Nest 11
 * (README "Testing"). Every `@nestjs/*` import, from lib/, sample-app/, the specs and the packages in
 * node_modules alike, is mapped to test/compat/nest11/node_modules (Nest 11.2, installed with
 * `npm ci --prefix test/compat/nest11`); the sample app the multi-instance suite starts as child
 * processes is compiled under that folder, so plain Node resolves its `@nestjs/*` imports there too.
 * The global setup and test/compat/nest-version.nest11-spec.ts fail the run unless it is Nest 11.
 * @type {import('jest').Config}
 */
import base from './jest.config.js';

const NEST11 = '<rootDir>/test/compat/nest11/node_modules/@nestjs';

/**
 * The specs run on Nest 11: the version check, the HTTP contract (each on Express and Fastify,
 * the backend suites on memory and Redis), the two-instance suite (sample apps as processes), and
 * one suite for each other Nest package the library meets (@nestjs/passport, @nestjs/websockets
 * with socket.io, @nestjs/schedule with @nestjs/testing, third-party middleware through Nest's
 * MiddlewareConsumer).
 */
export const NEST11_SPECS = [
  'test/compat/nest-version.nest11-spec.ts',
  'test/e2e/session.e2e-spec.ts',
  'test/e2e/session-middleware.e2e-spec.ts',
  'test/e2e/locking.e2e-spec.ts',
  'test/e2e/manager.e2e-spec.ts',
  'test/e2e/user-sessions.e2e-spec.ts',
  'test/e2e/redis-multi-instance.e2e-spec.ts',
  'test/e2e/passport.e2e-spec.ts',
  'test/e2e/websocket-socket-io.e2e-spec.ts',
  'test/e2e/third-party-middleware.e2e-spec.ts',
  'test/unit/session-manager.scheduler.spec.ts',
];

export default {
  ...base,
  roots: ['<rootDir>/test'],
  testMatch: NEST11_SPECS.map((spec) => `<rootDir>/${spec}`),
  moduleNameMapper: {
    '^@nestjs/([^/]+)$': `${NEST11}/$1`,
    '^@nestjs/([^/]+)/(.+)$': `${NEST11}/$1/$2`,
    ...base.moduleNameMapper,
  },
  globalSetup: '<rootDir>/test/compat/nest11/global-setup.js',
};
