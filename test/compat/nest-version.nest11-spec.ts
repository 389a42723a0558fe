import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HttpAdapterHost, NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { SessionModule } from 'nest-session';

// Outside test/compat/nest11: from here, plain resolution finds the project's Nest 12; only the
// moduleNameMapper of jest.nest11.config.js makes these imports Nest 11.
const NEST11 = join(dirname(fileURLToPath(import.meta.url)), 'nest11');
const NODE_MODULES = join(NEST11, 'node_modules');
const { devDependencies } = JSON.parse(readFileSync(join(NEST11, 'package.json'), 'utf8')) as {
  devDependencies: Record<string, string>;
};
// Jest's createRequire goes through Jest's resolver, so it sees what every import in this run sees.
const require = createRequire(import.meta.url);

describe('npm run test:nest11 runs on Nest 11', () => {
  it.each(Object.entries(devDependencies))('%s resolves to this folder with the major of %s', (name, range) => {
    const path = require.resolve(`${name}/package.json`);
    expect(path.startsWith(NODE_MODULES + sep)).toBe(true);
    const { version } = require(`${name}/package.json`) as { version: string };
    expect(version.split('.')[0]).toBe(/^\^?(\d+)\./.exec(range)![1]);
  });

  it('the library runs inside that Nest 11', async () => {
    expect(require.resolve('@nestjs/core')).toBe(join(NODE_MODULES, '@nestjs', 'core', 'index.js'));
    expect((require('@nestjs/core') as { NestFactory: unknown }).NestFactory).toBe(NestFactory);
    const app = await NestFactory.create(SessionModule.forRoot({}), new ExpressAdapter(), { logger: false });
    try {
      await app.init();
      // The library injects HttpAdapterHost from '@nestjs/core': the same class as Nest 11's own.
      expect(app.get(HttpAdapterHost)).toBeInstanceOf(HttpAdapterHost);
      expect(app.get(HttpAdapterHost).httpAdapter).toBeInstanceOf(ExpressAdapter);
    } finally {
      await app.close();
    }
  });
});
