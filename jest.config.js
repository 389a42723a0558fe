/**
 * Jest runs in ESM mode because NestJS 12 is ESM-only (see README "Testing").
 * `npm test` passes --experimental-vm-modules to Node.
 * @type {import('jest').Config}
 */
export default {
  testEnvironment: 'node',
  roots: ['<rootDir>/test', '<rootDir>/lib'],
  testMatch: ['**/*.spec.ts', '**/*.e2e-spec.ts'],
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: {
    '^nest-session$': '<rootDir>/lib/index.ts',
    '^nest-session/(redis|cache-manager|postgres|terminus|opentelemetry|cli)$': '<rootDir>/lib/$1/index.ts',
    '^(\\.{1,2}/.*)\\.js$': '$1',
    // mercurius requires @fastify/static, which requires the ESM-only content-disposition 3; Jest's
    // module system cannot require(esm) before Node 24.9. Version 2 (CommonJS, express' own) has the same `create`.
    '^content-disposition$': '<rootDir>/node_modules/content-disposition/dist/index.js',
  },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: '<rootDir>/tsconfig.json' }],
  },
  testTimeout: 30000,
  maxWorkers: 2,
};
