import { describe, expect, it } from '@jest/globals';
import { InvalidOptionException, StoreUnavailableException, type SessionModuleOptions } from 'nest-session';
import { createRedisSessionStores } from 'nest-session/redis';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';

/** The message `resolveSessionOptions(options)` throws (it must throw InvalidOptionException). */
function refusal(options: unknown): string {
  try {
    resolveSessionOptions(options as SessionModuleOptions);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidOptionException);
    return (error as Error).message;
  }
  throw new Error(`accepted ${JSON.stringify(options)}`);
}

describe('SessionModule options: unknown keys', () => {
  it('refuses a misspelt top-level option and suggests the right one', () => {
    const message = refusal({ inactivityTimout: 60 });
    expect(message).toContain('"inactivityTimout"');
    expect(message).toContain('did you mean "inactivityTimeout"?');
  });

  it.each([
    [{ cookie: { sameSit: 'strict' } }, 'cookie.sameSit', 'cookie.sameSite'],
    [{ cookie: { httponly: false } }, 'cookie.httponly', 'cookie.httpOnly'],
    [{ lock: { waitTimout: 10 } }, 'lock.waitTimout', 'lock.waitTimeout'],
    [{ garbageCollection: { probabilty: 1 } }, 'garbageCollection.probabilty', 'garbageCollection.probability'],
    [{ ipLock: { ipv4prefix: 3 } }, 'ipLock.ipv4prefix', 'ipLock.ipv4Prefix'],
    [{ secure: true }, 'secure', 'cookie.secure'],
    [{ maxEntryByte: 10 }, 'maxEntryByte', 'maxEntryBytes'],
  ])('refuses %j in a nested group too, naming %s and suggesting %s', (options, path, suggestion) => {
    const message = refusal(options);
    expect(message).toContain(`"${path}"`);
    expect(message).toContain(`did you mean "${suggestion}"?`);
  });

  it('refuses a key with no near match without a suggestion, listing the known ones', () => {
    const message = refusal({ cookie: { flavour: 'oat' } });
    expect(message).toContain('"cookie.flavour" is not a SessionModule option');
    expect(message).not.toContain('did you mean');
    expect(message).toContain('httpOnly');
  });

  it('accepts every documented option, including explicitly undefined ones', () => {
    expect(() =>
      resolveSessionOptions({
        cookie: {
          name: 'sid',
          lifetime: 0,
          path: '/',
          secure: 'auto',
          httpOnly: true,
          sameSite: 'lax',
          clearSiteData: true,
          domain: undefined,
        },
        inactivityTimeout: 600,
        updateGracePeriod: 10,
        lock: { waitTimeout: 100, ttl: 1000 },
        garbageCollection: { probability: 0, maximumPerRun: 10, cron: false },
        ipLock: { ipv4Prefix: 3, ipv6Prefix: 4 },
        maxEntryBytes: 1000,
        maxKeysPerSession: 10,
        maxTagsPerSession: 5,
        idHeader: 'X-Session-Id',
      }),
    ).not.toThrow();
  });
});

describe('SessionModule options: values', () => {
  it('reports NaN as NaN, not as null', () => {
    expect(refusal({ inactivityTimeout: Number.NaN })).toContain('(got NaN)');
    expect(refusal({ lock: { ttl: Number.NaN } })).toContain('(got NaN)');
    expect(refusal({ garbageCollection: { probability: Number.NaN } })).toContain('(got NaN)');
    expect(refusal({ ipLock: { ipv4Prefix: Number.NaN } })).toContain('(got NaN)');
    expect(refusal({ maxKeysPerSession: Number.POSITIVE_INFINITY })).toContain('(got Infinity)');
  });

  it.each([['maxEntryBytes'], ['maxKeysPerSession'], ['maxTagsPerSession']])('%s must be a whole number >= 1', (name) => {
    expect(refusal({ [name]: 0 })).toContain(`"${name}"`);
    expect(refusal({ [name]: 1.5 })).toContain(`"${name}"`);
  });

  it('has documented limits by default and keeps the id header in lower case', () => {
    const o = resolveSessionOptions({ idHeader: 'X-Session-Id' });
    expect(o).toMatchObject({
      maxEntryBytes: 1048576,
      maxKeysPerSession: 1000,
      maxTagsPerSession: 100,
      idHeader: 'x-session-id',
    });
    expect(resolveSessionOptions({}).idHeader).toBeUndefined();
    expect(resolveSessionOptions({}).cookie.clearSiteData).toBe(false);
  });

  it.each([['cookie'], ['Set-Cookie'], ['has space'], ['']])('refuses the id header %j', (name) => {
    expect(refusal({ idHeader: name })).toContain('"idHeader"');
  });
});

describe('SessionModule options: cookie hardening at boot', () => {
  it("refuses sameSite 'none' unless secure is true (browsers drop it without Secure)", () => {
    expect(refusal({ cookie: { sameSite: 'none' } })).toMatch(/cookie\.sameSite.*secure: true \(got "auto"\)/);
    expect(refusal({ cookie: { sameSite: 'none', secure: false } })).toContain('cookie.sameSite');
    expect(resolveSessionOptions({ cookie: { sameSite: 'none', secure: true } }).cookie.sameSite).toBe('none');
  });

  it('refuses a __Host- cookie with a Domain, another Path or secure: false', () => {
    expect(refusal({ cookie: { name: '__Host-sid', domain: 'example.com' } })).toContain('"cookie.domain"');
    expect(refusal({ cookie: { name: '__Host-sid', path: '/app' } })).toContain('"cookie.path"');
    expect(refusal({ cookie: { name: '__Host-sid', secure: false } })).toContain('"cookie.secure"');
    expect(refusal({ cookie: { name: '__Secure-sid', secure: false } })).toContain('"cookie.secure"');
    expect(() => resolveSessionOptions({ cookie: { name: '__Host-sid' } })).not.toThrow();
    expect(() => resolveSessionOptions({ cookie: { name: '__Secure-sid', domain: 'example.com', path: '/app' } })).not.toThrow();
  });
});

describe('the boot-time store error', () => {
  it('is worded for boot, not for a request', async () => {
    const error = await createRedisSessionStores({ url: 'redis://127.0.0.1:1', connectTimeout: 500 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StoreUnavailableException);
    const message = (error as Error).message;
    expect(message).toContain('while the application started');
    expect(message).toContain('redis://127.0.0.1:1');
    expect(message).not.toMatch(/request|commit/i);
    // What a client would be told names no address.
    expect((error as StoreUnavailableException).publicMessage).not.toContain('127.0.0.1');
  });
});
