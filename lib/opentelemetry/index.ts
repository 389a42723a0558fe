// Public API of the OpenTelemetry metrics ('nest-session/opentelemetry'); needs the optional peer `@opentelemetry/api`.
export { OpenTelemetrySessionMetrics, type OpenTelemetrySessionMetricsOptions } from './opentelemetry-session.metrics.js';
