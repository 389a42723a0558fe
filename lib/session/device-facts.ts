import { ipLockValue } from './ip-lock.js';
import type { ResolvedIpLockOptions } from './session-module.options.js';

/** Longest user agent kept per session: enough to tell devices apart, bounded in the store. */
export const MAX_USER_AGENT_LENGTH = 200;

/** Prefixes used for the device address when the IP lock is off: the full IPv4 address, an IPv6 /64. */
const DEVICE_PREFIXES: ResolvedIpLockOptions = Object.freeze({ ipv4Prefix: 4, ipv6Prefix: 4 });

/** What a user's device list shows about the client of a session (ASVS 7.5.2). */
export interface DeviceFacts {
  readonly userAgent?: string;
  readonly clientAddress?: string;
}

/**
 * The device facts of a request's client: its user agent cut to 200 characters (control
 * characters dropped), and its address as an IP-lock prefix (the `ipLock` prefixes, or a full
 * IPv4 address / an IPv6 /64 when the lock is off), so the device list stores no more of an
 * address than the IP lock does.
 */
export function deviceFactsOf(
  userAgent: string | undefined,
  clientIp: string | undefined,
  lock: ResolvedIpLockOptions | undefined,
): DeviceFacts {
  // A login asks twice (when it binds the user and when it commits), with the same client.
  const last = lastFacts;
  if (last !== undefined && last.userAgent === userAgent && last.clientIp === clientIp && last.lock === lock) return last.facts;
  const facts = Object.freeze(computeDeviceFacts(userAgent, clientIp, lock));
  lastFacts = { userAgent, clientIp, lock, facts };
  return facts;
}

/** The last answer of `deviceFactsOf` and what it was asked (its facts are never changed). */
let lastFacts:
  | {
      readonly userAgent: string | undefined;
      readonly clientIp: string | undefined;
      readonly lock: ResolvedIpLockOptions | undefined;
      readonly facts: DeviceFacts;
    }
  | undefined;

function computeDeviceFacts(
  userAgent: string | undefined,
  clientIp: string | undefined,
  lock: ResolvedIpLockOptions | undefined,
): DeviceFacts {
  const facts: { userAgent?: string; clientAddress?: string } = {};
  if (typeof userAgent === 'string') {
    // eslint-disable-next-line no-control-regex
    const clean = userAgent.replace(/[\u0000-\u001f\u007f]/g, '').trim();
    if (clean !== '') facts.userAgent = clean.slice(0, MAX_USER_AGENT_LENGTH);
  }
  const address = addressPrefix(clientIp, lock ?? DEVICE_PREFIXES);
  if (address !== undefined) facts.clientAddress = address;
  return facts;
}

/**
 * An address prefix for display: a full address as it is (`203.0.113.7`), a shorter prefix in
 * CIDR notation (`203.0.113.0/24`, `2001:db8:0:1::/64`); undefined when unknown.
 */
function addressPrefix(ip: string | undefined, lock: ResolvedIpLockOptions): string | undefined {
  const value = ipLockValue(ip, lock);
  if (value === undefined) return undefined;
  const parts = value.slice(2);
  if (value.startsWith('4:')) {
    const octets = parts.split('.');
    if (octets.length === 4) return parts;
    return `${[...octets, '0', '0', '0'].slice(0, 4).join('.')}/${octets.length * 8}`;
  }
  const blocks = parts.split(':');
  if (blocks.length === 8) return parts;
  return `${blocks.join(':')}::/${blocks.length * 16}`;
}
