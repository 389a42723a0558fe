// Public API of the terminus integration ('nest-session/terminus'); needs the optional peer `@nestjs/terminus`.
export {
  SessionHealthIndicator,
  type SessionHealthCheckOptions,
  type SessionStorePartHealth,
} from './session-health.indicator.js';
