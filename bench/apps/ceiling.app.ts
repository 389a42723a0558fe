import { Controller, Get, Module } from '@nestjs/common';
import type { AppEnv, HttpAdapterName } from '../variants.js';
import { createNestApp, type BenchApp } from './nest.js';

/** The same routes as the session apps, without any session: the ceiling. */
@Controller()
class CeilingController {
  @Get('anon')
  anon(): { ok: boolean } {
    return { ok: true };
  }

  /** Stands for "read one key": the same answer shape, nothing to read. */
  @Get('read')
  read(): { value: number | null } {
    return { value: null };
  }
}

@Module({ controllers: [CeilingController] })
class CeilingModule {}

export async function buildCeilingApp(adapter: HttpAdapterName, _env: AppEnv): Promise<BenchApp> {
  const app = await createNestApp(CeilingModule, adapter);
  return { app, info: 'no session middleware', close: () => app.close() };
}
