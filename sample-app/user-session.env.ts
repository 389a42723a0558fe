import type { SessionModuleOptions } from 'nest-session';

/**
 * The user-session settings of the sample app, from the environment (unset = the module's default):
 * - `SESSION_ABSOLUTE_TIMEOUT` (seconds): `absoluteTimeout`, counted from creation and reset at login.
 * - `SESSION_MAX_PER_USER` (n): `maxSessionsPerUser`; the oldest session of a user beyond n ends
 *   when a new one logs in (`maxSessionsPolicy: 'evict-oldest'`).
 * @throws Error for a value that is not a whole number >= 0.
 */
export function userSessionOptionsFromEnv(
  env: NodeJS.ProcessEnv,
): Pick<SessionModuleOptions, 'absoluteTimeout' | 'maxSessionsPerUser'> {
  const options: { absoluteTimeout?: number; maxSessionsPerUser?: number } = {};
  const absolute = wholeNumber(env, 'SESSION_ABSOLUTE_TIMEOUT');
  if (absolute !== undefined) options.absoluteTimeout = absolute;
  const max = wholeNumber(env, 'SESSION_MAX_PER_USER');
  if (max !== undefined) options.maxSessionsPerUser = max;
  return options;
}

function wholeNumber(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 0)
    throw new Error(`${name} must be a whole number >= 0, not ${JSON.stringify(raw)}`);
  return value;
}
