import type { SessionModuleOptions } from 'nest-session';

/**
 * The security settings of the sample app, from the environment (unset or empty = the module's default):
 * - `SESSION_INACTIVITY_TIMEOUT` (seconds > 0): `inactivityTimeout`.
 * - `SESSION_COOKIE_NAME` (e.g. `__Host-sid`): `cookie.name`.
 * - `SESSION_ID_HEADER` (e.g. `x-session-id`): `idHeader`, session ids in a header for clients
 *   without cookies.
 * @throws Error for an inactivity timeout that is not a number > 0.
 */
export function securitySessionOptionsFromEnv(
  env: NodeJS.ProcessEnv,
): Pick<SessionModuleOptions, 'inactivityTimeout' | 'cookie' | 'idHeader'> {
  const options: { inactivityTimeout?: number; cookie?: { name: string }; idHeader?: string } = {};
  const timeout = env.SESSION_INACTIVITY_TIMEOUT;
  if (timeout !== undefined && timeout !== '') {
    const seconds = Number(timeout);
    if (!Number.isFinite(seconds) || seconds <= 0)
      throw new Error(`SESSION_INACTIVITY_TIMEOUT must be a number of seconds > 0, not ${JSON.stringify(timeout)}`);
    options.inactivityTimeout = seconds;
  }
  // Names and headers are checked by SessionModule at boot (with a message naming the option).
  if (env.SESSION_COOKIE_NAME) options.cookie = { name: env.SESSION_COOKIE_NAME };
  if (env.SESSION_ID_HEADER) options.idHeader = env.SESSION_ID_HEADER;
  return options;
}

/** What the framework's trust-proxy setting accepts: true/false, a hop count, or addresses/CIDRs/names ("loopback"). */
export type TrustProxySetting = boolean | number | string;

/**
 * `TRUST_PROXY`, passed to the framework's trust-proxy setting (Express `app.set('trust proxy')`,
 * Fastify's `trustProxy`): `true`/`false`, a whole number of hops, or a comma-separated list
 * of addresses, CIDRs or the names `loopback`, `linklocal`, `uniquelocal`. Unset = not trusted.
 * Needed behind a TLS-terminating proxy for `cookie.secure: 'auto'` and for the IP lock.
 */
export function trustProxyFromEnv(env: NodeJS.ProcessEnv): TrustProxySetting | undefined {
  const raw = env.TRUST_PROXY?.trim();
  if (raw === undefined || raw === '') return undefined;
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  if (/^\d+$/.test(raw)) return Number(raw);
  return raw;
}
