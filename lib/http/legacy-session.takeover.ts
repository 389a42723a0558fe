import { Logger } from '@nestjs/common';
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { IDENTIFIER_PATTERN, isReservedName } from '../cache/identifier.js';
import { SessionError } from '../errors/session.error.js';
import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';
import { unsignExpressSessionCookie } from '../legacy/express-session-cookie.js';
import type { LegacySessionData } from '../legacy/legacy-session.loader.js';
import type { ResolvedLegacySessionOptions } from '../legacy/legacy-session.options.js';
import type { Session } from '../session/session.js';
import type { SessionStore } from '../session/session.store.js';
import { readSessionCookies } from './session-cookie.js';

/**
 * Takes express-session users over (option `legacy`): the HTTP handler asks it for a request
 * without a session cookie of ours. A validly signed legacy cookie's session is taken from the
 * legacy store (read and removed in one atomic step) into the request's new session: every key
 * but `cookie` becomes a data key, the legacy user (`passport.user`) the bound user. The session
 * is stored at once, and its response expires the legacy cookie.
 *
 * Parallel first requests with one legacy cookie (a browser that loads a page and its API calls)
 * end in one session, on one instance or many: each takes the store's lock of that legacy id
 * (`~legacy-<digest>`). The first one under it takes the legacy entry, stores the new session,
 * and leaves a pointer to it for `graceSeconds`; the others, under the lock after it, follow the
 * pointer and answer with that same session (and its cookie). The pointer is keyed by a digest
 * of the legacy id and holds our id encrypted with a key derived from the legacy id, which no
 * store keeps: a dump of the store hands out neither id. A bad signature starts nothing and costs
 * no I/O; an unknown or already taken id (after the grace) starts nothing and costs a lock round
 * trip. If the winner's commit fails (store down), the legacy session is gone all the same: the
 * user is logged out, never given two sessions.
 */
export class LegacySessionTakeover {
  private readonly logger = new Logger('LegacySession');
  /** Sessions of this process that were taken over and whose response must expire the legacy cookie. */
  private readonly takenOver = new WeakSet<Session>();

  constructor(
    readonly options: ResolvedLegacySessionOptions,
    private readonly store: SessionStore,
  ) {}

  /** The legacy session id of a request's Cookie header when a secret signed it; no I/O. */
  legacyId(cookieHeader: string | string[] | undefined): string | undefined {
    const values = readSessionCookies(cookieHeader, this.options.cookie.name, isPlausible);
    for (const value of values) {
      const sid = unsignExpressSessionCookie(value, this.options.secrets);
      if (sid !== undefined) return sid;
    }
    return undefined;
  }

  /**
   * Takes the legacy session `sid` over into `session` (not started yet), or, when a parallel
   * request took it over moments ago, answers that request's session instead, built by `follow`
   * from its id (resumed, with its cookie set by the response). Answers `session` unstarted
   * when there is no legacy session.
   * @throws StoreUnavailableException when the legacy store or ours fails (nothing was taken,
   *   or, failing after the take, the legacy session is lost as described on the class).
   */
  async takeOver(session: Session, sid: string, follow: (id: string) => Session): Promise<Session> {
    const keys = takeoverKeys(sid);
    let lock;
    try {
      lock = await this.store.lock(keys.lock);
    } catch (error) {
      if (error instanceof StoreUnavailableException) throw error;
      // A lock timeout: a parallel takeover is stuck; this request goes on without a session.
      this.logger.warn(`A legacy takeover waited too long for a parallel one (${(error as Error).name}); no session.`);
      return session;
    }
    try {
      const pointer = await this.readPointer(keys);
      if (pointer !== undefined) return await this.followPointer(pointer, follow);
      let data;
      try {
        data = await this.options.loader.take(sid);
      } catch (error) {
        throw StoreUnavailableException.create('take over the legacy session', error);
      }
      if (data === undefined) return session;
      await this.fill(session, data);
      await session.save();
      await this.writePointer(keys, session.getId());
      return session;
    } finally {
      await lock.release().catch(() => false);
    }
  }

  /** Whether the response of `session` must expire the legacy cookie. */
  mustExpireCookie(session: Session): boolean {
    return this.takenOver.has(session);
  }

  /** Set-Cookie that expires the legacy cookie (with the path and domain it was set with). */
  expiryCookie(secure: boolean): string {
    const { name, path, domain } = this.options.cookie;
    return (
      `${name}=; Path=${path}${domain === undefined ? '' : `; Domain=${domain}`}` +
      `; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly${secure ? '; Secure' : ''}`
    );
  }

  /** Starts `session` with the legacy data and user. */
  private async fill(session: Session, data: LegacySessionData): Promise<void> {
    session.start();
    const skipped: string[] = [];
    for (const [key, value] of Object.entries(data)) {
      if (key === 'cookie') continue;
      if (!IDENTIFIER_PATTERN.test(key) || isReservedName(key)) {
        skipped.push(key.slice(0, 40));
        continue;
      }
      try {
        await session.putData(key, value);
      } catch {
        skipped.push(key); // e.g. a value our serializer cannot store; its key is logged, never the value
      }
    }
    let userId = this.options.userIdOf(data);
    if (userId !== undefined) {
      try {
        session.bindToUser(userId);
      } catch {
        // e.g. a user id longer than 1024 characters: the data is kept, the session stays anonymous
        skipped.push('(user binding)');
        userId = undefined;
      }
    }
    this.takenOver.add(session);
    this.logger.log(
      `Took over a legacy session as session #${session.getHandle()}${userId === undefined ? '' : ' (user-bound)'}` +
        (skipped.length === 0 ? '' : `; keys not taken over: ${skipped.map((k) => JSON.stringify(k)).join(', ')}`),
    );
  }

  /** The session a parallel takeover stored, resumed; the unstarted session when it is gone. */
  private async followPointer(id: string, follow: (id: string) => Session): Promise<Session> {
    const followed = follow(id);
    await followed.resume();
    // Ended meanwhile (logged out, renewed by a login): like a taken id, no session.
    if (!followed.isStarted()) return followed;
    followed.issueIdToClient();
    this.takenOver.add(followed);
    return followed;
  }

  private async readPointer(keys: TakeoverKeys): Promise<string | undefined> {
    if (this.options.graceSeconds === 0) return undefined;
    let sealed: unknown;
    try {
      sealed = await this.store.storageCache.get(keys.pointer);
    } catch (error) {
      if (error instanceof SessionError) throw error;
      throw StoreUnavailableException.create('read the legacy takeover', error);
    }
    return typeof sealed === 'string' ? open(sealed, keys.secret) : undefined;
  }

  private async writePointer(keys: TakeoverKeys, id: string): Promise<void> {
    if (this.options.graceSeconds === 0) return;
    try {
      await this.store.storageCache.set(keys.pointer, seal(id, keys.secret), [], this.options.graceSeconds);
    } catch (error) {
      // The session is stored; only a parallel request of this takeover would miss it.
      this.logger.warn(`Could not record a legacy takeover for parallel requests: ${(error as Error).message}`);
    }
  }
}

interface TakeoverKeys {
  /** The lock key of the legacy id (session lock keys never start with `~`). */
  readonly lock: string;
  /** The storage-cache entry of the pointer (storage keys of sessions never start with `~`). */
  readonly pointer: string;
  /** AES-256 key of the pointer, derived from the legacy id (stored nowhere). */
  readonly secret: Buffer;
}

function takeoverKeys(sid: string): TakeoverKeys {
  const derive = (label: string) => createHmac('sha256', sid).update(label).digest();
  const digest = derive('nest-session legacy takeover: key').toString('base64url');
  return { lock: `~legacy-${digest}`, pointer: `~takeover-${digest}`, secret: derive('nest-session legacy takeover: pointer') };
}

/** AES-256-GCM: iv (12) | tag (16) | ciphertext, base64url. */
function seal(id: string, secret: Buffer): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', secret, iv);
  const body = Buffer.concat([cipher.update(id, 'utf8'), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url');
}

/** The id `seal` sealed, or undefined for anything else (a tampered or foreign entry). */
function open(sealed: string, secret: Buffer): string | undefined {
  const raw = Buffer.from(sealed, 'base64url');
  if (raw.length < 29) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', secret, raw.subarray(0, 12));
    decipher.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
  } catch {
    return undefined;
  }
}

/** Only values shaped like a signed express-session cookie are unsigned (`s:` URL-encoded or not). */
function isPlausible(value: string): boolean {
  return value.startsWith('s%3A') || value.startsWith('s:');
}
