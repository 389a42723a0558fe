/** Default re-authentication age of `GET /account/sensitive`, in seconds. */
export const DEFAULT_FRESH_AGE = 300;

/**
 * `SESSION_FRESH_AGE` (seconds, default 300): how recently a user must have logged in or
 * re-authenticated (`POST /auth/reauth`) for `GET /account/sensitive`. Read once when the
 * account controller is loaded, because `@RequireFreshSession()` takes it at decoration time.
 * @throws Error for a value that is not a number of seconds > 0.
 */
export function freshAgeFromEnv(env: NodeJS.ProcessEnv): number {
  const raw = env.SESSION_FRESH_AGE;
  if (raw === undefined || raw === '') return DEFAULT_FRESH_AGE;
  const seconds = Number(raw);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new Error(`SESSION_FRESH_AGE must be a number of seconds > 0, not ${JSON.stringify(raw)}`);
  }
  return seconds;
}
