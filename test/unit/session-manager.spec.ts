import { beforeAll, describe, expect, it } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { MemoryBackend } from '../../lib/cache/memory.backend.js';
import { InvalidOptionException } from '../../lib/errors/invalid-option.exception.js';
import { ipLockAllows, ipLockValue } from '../../lib/session/ip-lock.js';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { sessionManagerContract } from '../contract/session-manager.contract.js';

beforeAll(() => Logger.overrideLogger(['error', 'warn']));

sessionManagerContract('memory', async () => {
  const metadataBackend = new MemoryBackend();
  const storageBackend = new MemoryBackend();
  return {
    metadataBackend,
    storageBackend,
    cleanup: async () => {
      await metadataBackend.close();
      await storageBackend.close();
    },
    storedTagCount: async () => metadataBackend.stats().tags,
  };
});

describe('garbageCollection and ipLock options', () => {
  it('has defaults: 1 %, 1000 per run, every five minutes, IP lock off', () => {
    const options = resolveSessionOptions();
    expect(options.garbageCollection).toEqual({ probability: 1, maximumPerRun: 1000, cron: '*/5 * * * *' });
    expect(Object.isFrozen(options.garbageCollection)).toBe(true);
    expect(options.ipLock).toBeUndefined();
    expect(resolveSessionOptions({ ipLock: false }).ipLock).toBeUndefined();
    expect(resolveSessionOptions({ ipLock: {} }).ipLock).toEqual({ ipv4Prefix: 4, ipv6Prefix: 4 });
  });

  it('accepts decimals, 0 and false', () => {
    expect(resolveSessionOptions({ garbageCollection: { probability: 0.25, cron: false } }).garbageCollection).toEqual({
      probability: 0.25,
      maximumPerRun: 1000,
      cron: false,
    });
    expect(resolveSessionOptions({ garbageCollection: { probability: 0, cron: '0 */2 * * * *' } }).garbageCollection.cron).toBe(
      '0 */2 * * * *',
    );
  });

  it.each([
    [{ garbageCollection: { probability: 101 } }, 'garbageCollection.probability'],
    [{ garbageCollection: { probability: -1 } }, 'garbageCollection.probability'],
    [{ garbageCollection: { probability: Number.NaN } }, 'garbageCollection.probability'],
    [{ garbageCollection: { maximumPerRun: 0 } }, 'garbageCollection.maximumPerRun'],
    [{ garbageCollection: { maximumPerRun: 2.5 } }, 'garbageCollection.maximumPerRun'],
    [{ garbageCollection: { cron: 'every five minutes' } }, 'garbageCollection.cron'],
    [{ garbageCollection: { cron: '61 * * * *' } }, 'garbageCollection.cron'],
    [{ garbageCollection: { cron: '' } }, 'garbageCollection.cron'],
    [{ ipLock: { ipv4Prefix: 5 } }, 'ipLock.ipv4Prefix'],
    [{ ipLock: { ipv6Prefix: 9 } }, 'ipLock.ipv6Prefix'],
    [{ ipLock: { ipv6Prefix: 1.5 } }, 'ipLock.ipv6Prefix'],
  ])('fails at boot for %j, naming %s', (options, name) => {
    const resolve = () =>
      resolveSessionOptions({ ...options, metadataBackend: new MemoryBackend(), storageBackend: new MemoryBackend() });
    expect(resolve).toThrow(InvalidOptionException);
    expect(resolve).toThrow(`"${name}"`);
  });
});

describe('ipLockValue', () => {
  const lock = (ipv4Prefix: number, ipv6Prefix: number) => ({ ipv4Prefix, ipv6Prefix });

  it.each([
    ['192.0.2.33', lock(4, 8), '4:192.0.2.33'],
    ['192.0.2.33', lock(2, 8), '4:192.0'],
    ['192.0.2.33', lock(0, 8), undefined],
    ['::ffff:192.0.2.33', lock(3, 8), '4:192.0.2'],
    ['::FFFF:c000:0221', lock(4, 8), '4:192.0.2.33'],
    ['2001:db8::1', lock(4, 8), '6:2001:db8:0:0:0:0:0:1'],
    ['2001:DB8:0:0:1::', lock(4, 4), '6:2001:db8:0:0'],
    ['2001:db8:a:b:c:d:e:f', lock(4, 2), '6:2001:db8'],
    ['fe80::1%eth0', lock(4, 1), '6:fe80'],
    ['64:ff9b::192.0.2.33', lock(4, 8), '6:64:ff9b:0:0:0:0:c000:221'],
    ['::1', lock(4, 8), '6:0:0:0:0:0:0:0:1'],
    ['::', lock(4, 2), '6:0:0'],
    ['2001:db8::1', lock(4, 0), undefined],
    [undefined, lock(4, 8), undefined],
    ['not an ip', lock(4, 8), undefined],
    ['192.0.2.256', lock(4, 8), undefined],
  ])('%s with %j -> %s', (ip, options, expected) => {
    expect(ipLockValue(ip, options)).toBe(expected);
  });

  it('allows sessions without a stored value and apps with the lock off', () => {
    expect(ipLockAllows(undefined, '198.51.100.1', lock(4, 4))).toBe(true);
    expect(ipLockAllows('4:192.0.2.33', '198.51.100.1', undefined)).toBe(true);
    expect(ipLockAllows('4:192.0.2.33', '198.51.100.1', lock(4, 4))).toBe(false);
    expect(ipLockAllows('4:192.0.2.33', undefined, lock(4, 4))).toBe(false);
  });
});
