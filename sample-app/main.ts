import { Logger } from '@nestjs/common';
import { createSampleApp, type HttpAdapterName } from './app.factory.js';

async function main(): Promise<void> {
  const adapter = (process.env.HTTP_ADAPTER ?? 'express') as HttpAdapterName;
  if (adapter !== 'express' && adapter !== 'fastify') throw new Error(`HTTP_ADAPTER must be express or fastify, not ${String(adapter)}`);
  const port = Number(process.env.PORT ?? 3000);
  const app = await createSampleApp(adapter);
  await app.listen(port, '0.0.0.0');
  new Logger('SampleApp').log(`Listening on http://localhost:${port} (${adapter}, sessions in memory)`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
