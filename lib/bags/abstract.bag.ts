import type { SessionBagInterface } from './session-bag.interface.js';

/** Name and storage key, the part every bag shares; subclasses hold and store their data. */
export abstract class AbstractBag implements SessionBagInterface {
  /**
   * @param name bag name for `session.getBag(name)`.
   * @param storageKey key of the bag's entry in the storage cache.
   */
  constructor(
    private readonly name: string,
    private readonly storageKey: string,
  ) {}

  getName(): string {
    return this.name;
  }

  getStorageKey(): string {
    return this.storageKey;
  }

  abstract initialize(data: unknown): void;
  abstract clear(): unknown;
  abstract getStorableData(): unknown;
}
