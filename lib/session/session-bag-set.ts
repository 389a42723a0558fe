import type { VariableFrontend } from '../cache/variable.frontend.js';
import { assertIdentifier, assertNotReserved } from '../cache/identifier.js';
import { InvalidArgumentException } from '../errors/invalid-argument.exception.js';
import { SessionAttributes, type SessionAttributesSource } from '../bags/session-attributes.js';
import { assertStorageKey, type SessionBagRegistry } from '../bags/session-bag.registry.js';
import type { SessionBagInterface } from '../bags/session-bag.interface.js';
import type { SessionChangeSet, SessionChanges } from './session-change-set.js';
import type { SessionValueCodec } from './session-value.codec.js';
import { assertKeyCount } from './session-key-count.js';

/** Storage-key prefix of bag entries; `~` cannot occur in a user key. */
const BAG_PREFIX = '~bag:';

/** Names that are not bags of their own: the session's data and its metadata entry. */
const BUILT_IN = ['attributes', 'metadata'];

/** The data-entry key a bag is stored under. */
export function bagEntryKey(bag: SessionBagInterface): string {
  return BAG_PREFIX + bag.getStorageKey();
}

interface BagSlot {
  readonly bag: SessionBagInterface;
  /** Registered on this session (`register`): kept when changes are discarded; a registry bag is created afresh. */
  readonly own: boolean;
  initialized: boolean;
  /** Serialized data as loaded (or last written); undefined = no entry. */
  storedRaw: string | undefined;
}

/**
 * The bags of one session (Symfony): those registered on the session and those the module's
 * registry offers, each created and initialized from the loaded data on first use in the
 * request. At commit, a bag whose storable data differs from what is stored becomes a data
 * change; mergeable bags re-apply their changes onto what another request stored meanwhile.
 */
export class SessionBagSet {
  private readonly slots = new Map<string, BagSlot>();
  private attributeBag: SessionAttributes | undefined;

  constructor(
    private readonly registry: SessionBagRegistry,
    private readonly codec: SessionValueCodec,
    private readonly storage: VariableFrontend,
    /** `maxKeysPerSession`, for keys set through the attribute bag. */
    private readonly maxKeys = Infinity,
  ) {}

  /**
   * Registers a bag instance for this session only.
   * @throws InvalidArgumentException for a bad storage key or a taken name.
   */
  register(bag: SessionBagInterface): void {
    assertStorageKey(bag);
    const name = bag.getName();
    assertNotReserved(name, 'session bag name');
    if (BUILT_IN.includes(name) || this.slots.has(name) || this.registry.names().includes(name)) {
      throw new InvalidArgumentException(`A session bag named "${name}" is already registered.`);
    }
    this.slots.set(name, { bag, own: true, initialized: false, storedRaw: undefined });
  }

  /**
   * The bag `name`, initialized from `loadData()` the first time it is used since the last
   * (re)load.
   * @throws InvalidArgumentException naming the registered bags when `name` is unknown.
   */
  async get(name: string, loadData: () => Promise<ReadonlyMap<string, string>>): Promise<SessionBagInterface> {
    let slot = this.slots.get(name);
    if (slot === undefined) {
      const bag = this.registry.create(name);
      if (bag === undefined) {
        const known = [...BUILT_IN, ...this.registry.names(), ...this.slots.keys()];
        throw new InvalidArgumentException(`There is no session bag named "${name}". Registered bags: ${known.join(', ')}.`);
      }
      slot = { bag, own: false, initialized: false, storedRaw: undefined };
      this.slots.set(name, slot);
    }
    if (!slot.initialized) {
      const raw = (await loadData()).get(bagEntryKey(slot.bag));
      slot.bag.initialize(raw === undefined ? undefined : this.codec.decode(raw));
      slot.storedRaw = raw;
      slot.initialized = true;
    }
    return slot.bag;
  }

  /** Whether a bag was used since the last (re)load: then a commit must look at it. */
  isInUse(): boolean {
    for (const slot of this.slots.values()) if (slot.initialized) return true;
    return false;
  }

  /**
   * After a reload that keeps this request's changes (`open()`, `read()`): a bag this request
   * changed keeps its changes on top of `fresh` (the data just loaded), like the commit-time
   * merge: a mergeable bag re-applies them onto the fresh entry, any other bag keeps its value
   * (this request's value wins, as for data keys). An unchanged bag is initialized again from
   * the fresh data on its next use.
   */
  rebase(fresh: ReadonlyMap<string, string>): void {
    for (const slot of this.slots.values()) {
      if (!slot.initialized) continue;
      if (this.storable(slot.bag) === (slot.storedRaw ?? null)) {
        slot.initialized = false;
        continue;
      }
      const raw = fresh.get(bagEntryKey(slot.bag));
      if (raw !== slot.storedRaw) slot.bag.merge?.(raw === undefined ? undefined : this.codec.decode(raw));
      slot.storedRaw = raw;
    }
  }

  /**
   * Forgets this request's bag changes (Aerys `unlock()`, a failed `save()`, `destroy()`): a
   * bag from the registry is created afresh on its next use (a bag tracks its own changes,
   * which `initialize` does not forget); a bag registered on the session is initialized
   * again from the data as it then is.
   */
  discard(): void {
    for (const [name, slot] of this.slots) {
      if (slot.own) slot.initialized = false;
      else this.slots.delete(name);
    }
  }

  /** Records the bags whose storable data differs from what is stored as data changes; answers them. */
  collectChanges(changes: SessionChangeSet): SessionBagInterface[] {
    const changed: SessionBagInterface[] = [];
    for (const slot of this.slots.values()) {
      if (!slot.initialized) continue;
      const raw = this.storable(slot.bag);
      if (raw === (slot.storedRaw ?? null)) continue;
      changes.put(bagEntryKey(slot.bag), raw);
      changed.push(slot.bag);
    }
    return changed;
  }

  /**
   * Under the lock: re-applies this request's changes of the mergeable bags among `changed`
   * onto what another request stored meanwhile; answers their new entries (to be written).
   */
  async merge(storageId: string, changed: readonly SessionBagInterface[]): Promise<Map<string, string | null>> {
    const merged = new Map<string, string | null>();
    const mergeable = changed.filter((bag) => typeof bag.merge === 'function');
    if (mergeable.length === 0) return merged;
    const fresh = await this.storage.getMany(mergeable.map((bag) => `${storageId}.${bagEntryKey(bag)}`));
    mergeable.forEach((bag, i) => {
      const raw = fresh[i];
      if (raw === this.slots.get(bag.getName())?.storedRaw) return;
      bag.merge?.(raw === undefined ? undefined : this.codec.decode(raw));
      merged.set(bagEntryKey(bag), this.storable(bag));
    });
    return merged;
  }

  /**
   * After a commit: what it wrote for a bag is what is stored now, and a bag in use that was
   * written is told so (`committed`) to forget the changes it wrote.
   */
  acknowledge(written: SessionChanges): void {
    for (const slot of this.slots.values()) {
      const change = written.data.get(bagEntryKey(slot.bag));
      if (change === undefined) continue;
      slot.storedRaw = change ?? undefined;
      if (slot.initialized) slot.bag.committed?.(change === null ? undefined : this.codec.decode(change));
    }
  }

  /**
   * The attribute bag: a synchronous view of the session's own data, `stored()` (as loaded)
   * with the pending `changes` on top. Bag entries (keys starting with `~`) are left out.
   */
  attributes(stored: () => ReadonlyMap<string, string>, changes: SessionChangeSet): SessionAttributes {
    return (this.attributeBag ??= new SessionAttributes(this.attributeSource(stored, changes)));
  }

  private attributeSource(stored: () => ReadonlyMap<string, string>, changes: SessionChangeSet): SessionAttributesSource {
    const current = (key: string): string | undefined => {
      const change = changes.valueOf(key);
      return change !== undefined ? (change ?? undefined) : stored().get(key);
    };
    return {
      keys: (): string[] => {
        const keys = new Set([...stored().keys()].filter((k) => !k.startsWith('~')));
        for (const [key, value] of changes.data) {
          if (key.startsWith('~')) continue;
          if (value === null) keys.delete(key);
          else keys.add(key);
        }
        return [...keys];
      },
      has: (key: string): boolean => current(key) !== undefined,
      read: (key: string): unknown => {
        const raw = current(key);
        return raw === undefined ? undefined : this.codec.decode(raw);
      },
      write: (key: string, value: unknown): void => {
        assertIdentifier(key, 'session key');
        const raw = this.codec.encode(key, value);
        // The attribute bag is only handed out once the data is loaded: the count is exact.
        assertKeyCount(stored(), changes, key, this.maxKeys);
        changes.put(key, raw);
      },
      delete: (key: string): void => {
        assertIdentifier(key, 'session key');
        changes.put(key, null);
      },
    };
  }

  private storable(bag: SessionBagInterface): string | null {
    const storable = bag.getStorableData();
    return storable === undefined ? null : this.codec.encode(bagEntryKey(bag), storable);
  }
}
