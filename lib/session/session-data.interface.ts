/**
 * The shape of session data, for typed `getData`/`putData`. Extend it by declaration merging:
 *
 * ```ts
 * declare module 'nest-session' {
 *   interface SessionData { cart: string[]; visits: number }
 * }
 * ```
 * Keys you declare are typed; any other valid key is `unknown`.
 */
export interface SessionData {
  [key: string]: unknown;
}

/** Lock state of a session (amphp Aerys). */
export type SessionLockState = 'unlocked' | 'locked' | 'pending';
