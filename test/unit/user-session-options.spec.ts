import { describe, expect, it } from '@jest/globals';
import { InvalidArgumentException, InvalidOptionException, RequireFreshSession } from 'nest-session';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { deviceFactsOf } from '../../lib/session/device-facts.js';
import { resolveIpLockOptions } from '../../lib/session/ip-lock.js';

describe('user-session options (absoluteTimeout, maxSessionsPerUser, maxSessionsPolicy)', () => {
  it('default to off, and to evict-oldest', () => {
    const o = resolveSessionOptions({});
    expect([o.absoluteTimeout, o.maxSessionsPerUser, o.maxSessionsPolicy]).toEqual([0, 0, 'evict-oldest']);
  });

  it.each([
    [{ absoluteTimeout: -1 }, 'absoluteTimeout'],
    [{ absoluteTimeout: Infinity }, 'absoluteTimeout'],
    [{ maxSessionsPerUser: 2.5 }, 'maxSessionsPerUser'],
    [{ maxSessionsPerUser: -3 }, 'maxSessionsPerUser'],
    [{ maxSessionsPolicy: 'evict-newest' as 'reject' }, 'maxSessionsPolicy'],
  ])('refuse %j at boot, naming the option', (options, name) => {
    expect(() => resolveSessionOptions(options)).toThrow(InvalidOptionException);
    expect(() => resolveSessionOptions(options)).toThrow(`"${name}"`);
  });

  it('@RequireFreshSession() refuses a bad age when the route is declared', () => {
    expect(() => RequireFreshSession(0)).toThrow(InvalidArgumentException);
    expect(() => RequireFreshSession(Number.NaN)).toThrow(InvalidArgumentException);
    expect(() => RequireFreshSession(300)).not.toThrow();
  });
});

describe('device facts', () => {
  it('keep the user agent to 200 characters without control characters', () => {
    expect(deviceFactsOf(`A\u0000B\nC${'x'.repeat(300)}`, undefined, undefined).userAgent).toBe(`ABC${'x'.repeat(197)}`);
    expect(deviceFactsOf('   ', undefined, undefined)).toEqual({});
  });

  it('store the address as the IP-lock prefix: the lock options, or a full IPv4 address and an IPv6 /64', () => {
    expect(deviceFactsOf(undefined, '203.0.113.7', undefined).clientAddress).toBe('203.0.113.7');
    expect(deviceFactsOf(undefined, '::ffff:203.0.113.7', undefined).clientAddress).toBe('203.0.113.7');
    expect(deviceFactsOf(undefined, '2001:db8:0:1:2:3:4:5', undefined).clientAddress).toBe('2001:db8:0:1::/64');
    const lock = resolveIpLockOptions({ ipv4Prefix: 3, ipv6Prefix: 8 });
    expect(deviceFactsOf(undefined, '203.0.113.7', lock).clientAddress).toBe('203.0.113.0/24');
    expect(deviceFactsOf(undefined, '2001:db8::5', lock).clientAddress).toBe('2001:db8:0:0:0:0:0:5');
    expect(deviceFactsOf(undefined, 'not an address', undefined)).toEqual({});
    expect(deviceFactsOf(undefined, '203.0.113.7', resolveIpLockOptions({ ipv4Prefix: 0 }))).toEqual({});
  });
});

describe('sample app settings SESSION_ABSOLUTE_TIMEOUT, SESSION_MAX_PER_USER, SESSION_FRESH_AGE', () => {
  it('become the module options (unset = the defaults) and the fresh age (default 300)', async () => {
    const { sessionConfigFromEnv } = await import('../../sample-app/session-env.config.js');
    const { freshAgeFromEnv } = await import('../../sample-app/fresh-age.config.js');
    expect(sessionConfigFromEnv({ SESSION_ABSOLUTE_TIMEOUT: '28800', SESSION_MAX_PER_USER: '3' }).config.session).toMatchObject({
      absoluteTimeout: 28800,
      maxSessionsPerUser: 3,
    });
    expect(sessionConfigFromEnv({}).config.session).not.toHaveProperty('absoluteTimeout');
    expect(() => sessionConfigFromEnv({ SESSION_MAX_PER_USER: 'three' })).toThrow('SESSION_MAX_PER_USER');
    expect(freshAgeFromEnv({})).toBe(300);
    expect(freshAgeFromEnv({ SESSION_FRESH_AGE: '60' })).toBe(60);
    expect(() => freshAgeFromEnv({ SESSION_FRESH_AGE: '0' })).toThrow('SESSION_FRESH_AGE');
  });
});
