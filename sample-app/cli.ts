import 'reflect-metadata';
import { runSessionCli } from 'nest-session/cli';
import { AppModule } from './app.module.js';
import { sessionConfigFromEnv } from './session-env.config.js';

/*
 * The admin CLI on the sample app's own module and settings (the same SESSION_BACKEND, REDIS_URL,
 * SESSION_PREFIX, ... as `npm start`): `npm run cli -- sessions list --user alice`,
 * `sessions destroy --user alice`, `sessions gc --all`, `sessions stats`.
 */
const backend = sessionConfigFromEnv(process.env);
// No GC scheduler in a one-shot process: `sessions gc` runs it explicitly.
const session = {
  ...backend.config.session,
  garbageCollection: { ...backend.config.session?.garbageCollection, probability: 0, cron: false as const },
};
await runSessionCli(AppModule.forRoot({ ...backend.config, session }));
