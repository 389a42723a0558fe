import { isIP } from 'node:net';
import { InvalidOptionException, shownOptionValue } from '../errors/invalid-option.exception.js';
import type { ResolvedIpLockOptions, SessionIpLockOptions } from './session-module.options.js';

/**
 * Default prefixes when `ipLock` is enabled: the full IPv4 address, and the /64 network of an
 * IPv6 address (its first 4 blocks), because IPv6 privacy extensions change the last 64 bits
 * of a client's address every few hours.
 */
const DEFAULT_IPV4_PREFIX = 4;
const DEFAULT_IPV6_PREFIX = 4;

/**
 * Validates and freezes the `ipLock` option; `undefined`/`false` = off.
 * @throws InvalidOptionException naming the bad field.
 */
export function resolveIpLockOptions(options: SessionIpLockOptions | false | undefined): ResolvedIpLockOptions | undefined {
  if (options === undefined || options === false) return undefined;
  const given: unknown = options; // options may come from untyped configuration
  if (typeof given !== 'object' || given === null) {
    throw InvalidOptionException.create(
      'ipLock',
      `must be an object { ipv4Prefix?, ipv6Prefix? } or false (got ${JSON.stringify(options)})`,
    );
  }
  const resolved = {
    ipv4Prefix: options.ipv4Prefix ?? DEFAULT_IPV4_PREFIX,
    ipv6Prefix: options.ipv6Prefix ?? DEFAULT_IPV6_PREFIX,
  };
  if (!Number.isInteger(resolved.ipv4Prefix) || resolved.ipv4Prefix < 0 || resolved.ipv4Prefix > 4) {
    throw InvalidOptionException.create(
      'ipLock.ipv4Prefix',
      `must be a whole number of octets from 0 to 4 (got ${shownOptionValue(resolved.ipv4Prefix)})`,
    );
  }
  if (!Number.isInteger(resolved.ipv6Prefix) || resolved.ipv6Prefix < 0 || resolved.ipv6Prefix > 8) {
    throw InvalidOptionException.create(
      'ipLock.ipv6Prefix',
      `must be a whole number of 16-bit blocks from 0 to 8 (got ${shownOptionValue(resolved.ipv6Prefix)})`,
    );
  }
  return Object.freeze(resolved);
}

/**
 * The IP-lock value of a client address: its family and prefix, e.g. `4:192.168.1` or
 * `6:2001:db8:0:1`. `undefined` when there is nothing to lock to: the address is unknown or
 * malformed, or the prefix length of its family is 0. IPv4-mapped IPv6 addresses
 * (`::ffff:192.0.2.1`, what a dual-stack socket reports) count as IPv4.
 */
export function ipLockValue(ip: string | undefined, lock: ResolvedIpLockOptions): string | undefined {
  if (typeof ip !== 'string') return undefined;
  let address = ip.trim();
  const zone = address.indexOf('%');
  if (zone !== -1) address = address.slice(0, zone);
  const family = isIP(address);
  if (family === 4) return ipv4Value(address.split('.').map(Number), lock.ipv4Prefix);
  if (family !== 6) return undefined;
  const groups = ipv6Groups(address);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const [high, low] = [groups[6]!, groups[7]!];
    return ipv4Value([high >> 8, high & 0xff, low >> 8, low & 0xff], lock.ipv4Prefix);
  }
  if (lock.ipv6Prefix === 0) return undefined;
  return (
    '6:' +
    groups
      .slice(0, lock.ipv6Prefix)
      .map((g) => g.toString(16))
      .join(':')
  );
}

/**
 * The lock value of a session whose client address was unknown or malformed when it was
 * locked: it equals no value `ipLockValue` computes, so no request can resume the session. The
 * IP lock fails closed: a session that should be locked is never stored as unlocked because
 * the framework could not tell the address (a misconfigured proxy, a closed socket).
 */
export const UNKNOWN_ADDRESS_LOCK = '?';

/**
 * The value to lock a session to for a client at `ip`: `ipLockValue`, or
 * `UNKNOWN_ADDRESS_LOCK` when the address is unknown or malformed. `undefined` when the
 * prefix length of the address's family is 0 (that family is not locked by configuration), and
 * for every address, unknown ones included, when both prefixes are 0: such a lock locks no
 * client, so failing closed would lock out exactly the clients it was configured to let in.
 */
export function ipLockValueFor(ip: string | undefined, lock: ResolvedIpLockOptions): string | undefined {
  if (lock.ipv4Prefix === 0 && lock.ipv6Prefix === 0) return undefined;
  if (typeof ip !== 'string') return UNKNOWN_ADDRESS_LOCK;
  const address = ip.trim();
  const zone = address.indexOf('%');
  if (isIP(zone === -1 ? address : address.slice(0, zone)) === 0) return UNKNOWN_ADDRESS_LOCK;
  return ipLockValue(ip, lock);
}

/**
 * Whether a request from `ip` may resume a session whose metadata holds `stored`. A session
 * without a lock value (stored before the lock was enabled, or of a family locked with prefix
 * 0), or an app with the IP lock switched off, always may; a session locked while its address
 * was unknown (`UNKNOWN_ADDRESS_LOCK`) never may; otherwise the request's value (computed with
 * the current prefixes) must equal the stored one.
 */
export function ipLockAllows(
  stored: string | undefined,
  ip: string | undefined,
  lock: ResolvedIpLockOptions | undefined,
): boolean {
  if (stored === undefined || lock === undefined) return true;
  if (stored === UNKNOWN_ADDRESS_LOCK) return false;
  return ipLockValue(ip, lock) === stored;
}

function ipv4Value(octets: number[], prefix: number): string | undefined {
  return prefix === 0 ? undefined : '4:' + octets.slice(0, prefix).join('.');
}

/** The 8 blocks of a valid IPv6 address (`::` expanded, an embedded IPv4 tail converted). */
function ipv6Groups(address: string): number[] {
  let text = address.toLowerCase();
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const gap = text.indexOf('::');
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  if (gap === -1) return parse(text);
  const head = parse(text.slice(0, gap));
  const rest = parse(text.slice(gap + 2));
  return [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
}
