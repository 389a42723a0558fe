// Global setup of jest.nest11.config.js (plain Node, before any worker starts): fails the run unless
// every package of this folder's package.json is installed here with its declared major (Nest 11,
// @nestjs/schedule 6, ...), resolving as the compiled sample app will (from under this folder's
// node_modules), and tells test/support/sample-process.ts to compile the sample app there.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const NODE_MODULES = join(HERE, 'node_modules');

export default function globalSetup() {
  const { devDependencies } = JSON.parse(readFileSync(join(HERE, 'package.json'), 'utf8'));
  const resolveFromSample = createRequire(join(NODE_MODULES, '.cache', 'nest-session-e2e', 'sample-app', 'main.js'));
  const found = [];
  for (const [name, range] of Object.entries(devDependencies)) {
    let path;
    try {
      path = resolveFromSample.resolve(`${name}/package.json`);
    } catch {
      throw new Error(`${name} is not installed in test/compat/nest11: run \`npm ci --prefix test/compat/nest11\``);
    }
    const { version } = JSON.parse(readFileSync(path, 'utf8'));
    const major = /^\^?(\d+)\./.exec(range)[1];
    if (!path.startsWith(NODE_MODULES + sep) || version.split('.')[0] !== major) {
      throw new Error(`${name} resolves to ${version} at ${path}, not ${range} in test/compat/nest11/node_modules`);
    }
    found.push(`${name}@${version}`);
  }
  process.env.NEST_SESSION_E2E_NODE_MODULES = NODE_MODULES;
  console.log(`\nNest 11 run: ${found.join(' ')}`);
}
