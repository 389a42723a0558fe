import { isDeepStrictEqual } from 'node:util';
import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import type { Session } from '../session/session.js';

/** Callback of passport's `req.session` methods (express-session's signature). */
export type PassportSessionCallback = (error?: unknown) => void;

/** What passport keeps under its key (`req.session.passport`): `{ user: <serialized user> }`. */
export interface PassportSessionEntry {
  user?: unknown;
  [field: string]: unknown;
}

/**
 * The `req.session` that passport 0.5-0.7 needs, over the request's session. Passport reads and
 * writes one key (`passport` by default) and calls `regenerate(cb)` and `save(cb)`; this maps
 * what it does onto the session's own login path:
 *
 * - log in (`req.logIn`: `regenerate`, then `passport.user = serialized`, then `save`): the
 *   session is bound to the user (`bindToUser(userId(serialized))`: a new id and a new storage
 *   id, the data kept, the user tag for "log out everywhere" and the per-user cap) and the
 *   entry is stored under the key;
 * - log out (`req.logOut`: `passport.user` deleted, then `save`): the session is destroyed
 *   (`destroy('logout')`), the response expires the cookie;
 * - `regenerate(cb)` alone renews the id, keeping the data (unlike express-session, whose
 *   regenerate empties the session: passport's `keepSessionInfo` is therefore always on);
 * - `destroy(cb)` destroys the session.
 *
 * Other keys of `req.session` are not stored: use the injected `SessionInterface` for data.
 */
export class PassportSession {
  [key: string]: unknown;

  constructor(
    session: Session,
    key: string,
    stored: PassportSessionEntry | undefined,
    userIdOf: (serialized: unknown) => string,
  ) {
    // Non-enumerable: passport merges `req.session` objects (keepSessionInfo) by enumerable keys.
    Object.defineProperty(this, INTERNALS, {
      value: { session, key, userIdOf, loadedUser: stored?.user } satisfies Internals,
      enumerable: false,
    });
    if (stored !== undefined) this[key] = { ...stored };
  }

  /** Renews the session id (fixation defence), keeping the data; then calls `callback`. */
  regenerate(callback: PassportSessionCallback): void {
    const { session } = internals(this);
    try {
      if (isStored(session)) session.renewId();
    } catch (error) {
      callback(error);
      return;
    }
    callback();
  }

  /** Applies what passport changed under its key (log in or log out), then calls `callback`. */
  save(callback?: PassportSessionCallback): void {
    this.apply().then(
      () => callback?.(),
      (error: unknown) => callback?.(error),
    );
  }

  /** Destroys the session (the response expires the cookie), then calls `callback`. */
  destroy(callback?: PassportSessionCallback): void {
    const state = internals(this);
    const done = state.session.isStarted() ? state.session.destroy() : Promise.resolve();
    done.then(
      () => {
        state.loadedUser = undefined;
        this[state.key] = undefined;
        callback?.();
      },
      (error: unknown) => callback?.(error),
    );
  }

  private async apply(): Promise<void> {
    const state = internals(this);
    const entry = this[state.key] as PassportSessionEntry | undefined;
    const user = entry?.user;
    if (user === undefined || user === null) {
      // Logged out: the session ends (passport regenerates it next, which then has nothing to do).
      if (state.loadedUser !== undefined && state.session.isStarted()) await state.session.destroy('logout');
      state.loadedUser = undefined;
      return;
    }
    if (state.loadedUser !== undefined && isDeepStrictEqual(user, state.loadedUser) && isStored(state.session)) return;
    state.session.bindToUser(state.userIdOf(user));
    await state.session.putData(state.key, { ...entry, user });
    state.loadedUser = user;
  }
}

const INTERNALS: unique symbol = Symbol('nest-session.passport-session');

interface Internals {
  readonly session: Session;
  readonly key: string;
  readonly userIdOf: (serialized: unknown) => string;
  loadedUser: unknown;
}

function internals(target: PassportSession): Internals {
  return (target as unknown as { [INTERNALS]: Internals })[INTERNALS];
}

function isStored(session: Session): boolean {
  return session.isStarted() && !session.isNew();
}

/**
 * The user id a session is bound to for what `serializeUser` gave: a string as is, a number
 * or bigint as a string, an object's `id`.
 * @throws InvalidArgumentException for anything else (then pass the `userId` option).
 */
export function defaultPassportUserId(serialized: unknown): string {
  if (typeof serialized === 'string') return serialized;
  if (typeof serialized === 'number' || typeof serialized === 'bigint') return String(serialized);
  if (typeof serialized === 'object' && serialized !== null) {
    const id = (serialized as { id?: unknown }).id;
    if (typeof id === 'string' || typeof id === 'number') return String(id);
  }
  throw new InvalidArgumentException(
    'Cannot bind the session to the user passport logged in: serializeUser gave neither a string, a number nor an ' +
      'object with an id. Pass PassportSessionModule.forRoot({ passport, userId: (serialized) => ... }).',
  );
}
