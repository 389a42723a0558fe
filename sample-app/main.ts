import { createSampleApp } from './app.factory.js';
import { sessionConfigFromEnv } from './session-env.config.js';
import { legacyConfigFromEnv } from './legacy-session.config.js';

async function main(): Promise<void> {
  const adapter = process.env.HTTP_ADAPTER ?? 'express';
  if (adapter !== 'express' && adapter !== 'fastify') throw new Error(`HTTP_ADAPTER must be express or fastify, not ${adapter}`);
  const port = Number(process.env.PORT ?? 3000);
  const backend = sessionConfigFromEnv(process.env);
  const legacy = legacyConfigFromEnv(process.env);
  const app = await createSampleApp(adapter, legacy === undefined ? backend.config : { ...backend.config, legacy });
  await app.listen(port, '0.0.0.0');
  // console, not Logger.log: createSampleApp keeps Nest's logger at warn and error.
  console.log(`[SampleApp] Listening on http://localhost:${port} (${adapter}, sessions ${backend.description})`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
