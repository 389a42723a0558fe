import type { AppKind } from './variants.js';

/**
 * How the load generator handles the session cookie:
 * - `none`: no cookie at all (every request is a new visitor);
 * - `session`: each connection sends the cookie of its own existing session, prepared before
 *   the run with one warm-up request that wrote key `n` (32 connections = 32 users);
 * - `chain`: like `session`, and after every response the connection switches to the cookie
 *   the response set (login renews the id, so every request renews a live, stored session);
 * - `shared`: every connection sends the cookie of one existing session (one hot session).
 */
export type CookieMode = 'none' | 'session' | 'chain' | 'shared';

export interface Scenario {
  readonly name: string;
  readonly label: string;
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly cookie: CookieMode;
  /** Which kinds of app run it (the ceiling only where "no session" means something). */
  readonly kinds: readonly AppKind[];
  /** Part of `--quick`. */
  readonly quick: boolean;
  /** A note for the table, e.g. "ours only". */
  readonly note?: string;
}

export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'anonymous',
    label: 'anonymous (no session touched)',
    method: 'GET',
    path: '/anon',
    cookie: 'none',
    kinds: ['ceiling', 'ours', 'peer'],
    quick: true,
  },
  {
    name: 'read',
    label: 'read one key',
    method: 'GET',
    path: '/read',
    cookie: 'session',
    kinds: ['ceiling', 'ours', 'peer'],
    quick: true,
  },
  {
    name: 'write',
    label: 'write one key',
    method: 'POST',
    path: '/write',
    cookie: 'session',
    kinds: ['ours', 'peer'],
    quick: true,
  },
  {
    name: 'login',
    label: 'login (id renewal)',
    method: 'POST',
    path: '/login',
    cookie: 'chain',
    kinds: ['ours', 'peer'],
    quick: true,
  },
  {
    name: 'incr',
    label: 'locked increment',
    method: 'POST',
    path: '/incr',
    cookie: 'session',
    kinds: ['ours'],
    quick: false,
    note: 'ours only (@SessionLock())',
  },
  {
    name: 'hot',
    label: '32 connections writing one session',
    method: 'POST',
    path: '/write',
    cookie: 'shared',
    kinds: ['ours', 'peer'],
    quick: false,
  },
  {
    name: 'create',
    label: 'new session + write one key',
    method: 'POST',
    path: '/write',
    cookie: 'none',
    kinds: ['ours', 'peer'],
    quick: false,
  },
];
