import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { IDENTIFIER_PATTERN, assertNotReserved, isReservedName } from '../cache/identifier.js';
import type { SessionBagFactory, SessionBagInterface } from './session-bag.interface.js';

/**
 * The bags every session of this module offers: those from `forRoot({ bags })` and those
 * contributed by feature modules (`SessionModule.forFeature({ bags })`). It holds factories,
 * never instances, so each request gets fresh bags and no state leaks between requests.
 */
export class SessionBagRegistry {
  private readonly factories = new Map<string, SessionBagFactory>();

  /** @throws InvalidArgumentException for a duplicate name or a bad storage key. */
  register(factory: SessionBagFactory): void {
    const probe = factory();
    const name = probe.getName();
    assertNotReserved(name, 'session bag name');
    if (this.factories.has(name) || name === 'attributes' || name === 'metadata') {
      throw new InvalidArgumentException(`A session bag named "${name}" is already registered; bag names must be unique.`);
    }
    assertStorageKey(probe);
    this.factories.set(name, factory);
  }

  names(): string[] {
    return [...this.factories.keys()];
  }

  create(name: string): SessionBagInterface | undefined {
    return this.factories.get(name)?.();
  }
}

export function assertStorageKey(bag: SessionBagInterface): void {
  const key = bag.getStorageKey();
  if (typeof key !== 'string' || key.length > 200 || !IDENTIFIER_PATTERN.test(key) || isReservedName(key)) {
    throw new InvalidArgumentException(
      `Bag "${bag.getName()}" has an invalid storage key ${JSON.stringify(key)}: use 1-200 characters of A-Z, a-z, 0-9, "_", "%", "&", "-", "." and ":".`,
    );
  }
}
