import { ipLockAllows, ipLockValueFor } from './ip-lock.js';
import { deviceFactsOf } from './device-facts.js';
import type { SessionChangeSet } from './session-change-set.js';
import type { MutableSessionMetadata, SessionMetadata } from './session-metadata.interface.js';
import type { ResolvedIpLockOptions } from './session-module.options.js';

/** Where a session comes from. */
export interface SessionOrigin {
  /** Candidate ids from the request's cookies, well-formed ones only, in header order. */
  readonly cookieIds: readonly string[];
  /** Cookie name. */
  readonly cookieName: string;
  /** Remote sessions (SessionManager) write through on every change. */
  readonly remote?: boolean;
  /** Client address as the HTTP framework sees it (for the IP lock and the device list). */
  readonly clientIp?: string;
  /** The request's User-Agent header (for the device list; truncated when stored). */
  readonly userAgent?: string;
}

/*
 * What the origin's client means for the IP lock and the device list. A remote session has no
 * client of its own (an administrator's request reaches it): it is neither locked nor recorded.
 */

/**
 * IP-lock value of the origin's client (`UNKNOWN_ADDRESS_LOCK` when its address is unknown:
 * the lock fails closed); undefined when the lock is off or for remote sessions.
 */
export function originIpLock(origin: SessionOrigin, lock: ResolvedIpLockOptions | undefined): string | undefined {
  return lock === undefined || origin.remote === true ? undefined : ipLockValueFor(origin.clientIp, lock);
}

/** Whether the origin's client may resume a session with `metadata` (IP lock). */
export function originMayResume(
  origin: SessionOrigin,
  metadata: SessionMetadata,
  lock: ResolvedIpLockOptions | undefined,
): boolean {
  return origin.remote === true || ipLockAllows(metadata.ipLock, origin.clientIp, lock);
}

/**
 * The device facts of the origin's client (user agent, address prefix) onto `meta`, recorded
 * in `changes`: all of them at login (`replace`), else only those that are known and changed,
 * so that a metadata write that happens anyway refreshes them without costing a write of its own.
 */
export function recordDevice(
  origin: SessionOrigin,
  lock: ResolvedIpLockOptions | undefined,
  meta: MutableSessionMetadata,
  changes: SessionChangeSet,
  replace: boolean,
): void {
  if (origin.remote === true) return;
  const facts = deviceFactsOf(origin.userAgent, origin.clientIp, lock);
  for (const field of ['userAgent', 'clientAddress'] as const) {
    const value = facts[field];
    if (meta[field] !== value && (replace || value !== undefined)) {
      meta[field] = value;
      changes.setField(field, value);
    }
  }
}
