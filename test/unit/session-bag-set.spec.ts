import { describe, expect, it } from '@jest/globals';
import { AttributeBag, FlashBag, InvalidArgumentException, SessionBagRegistry } from 'nest-session';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { SessionBagSet, bagEntryKey } from '../../lib/session/session-bag-set.js';
import { metadataKeyOf } from '../../lib/session/session-key.js';
import { SessionChangeSet } from '../../lib/session/session-change-set.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { SessionValueCodec } from '../../lib/session/session-value.codec.js';

function setUp(): { bags: SessionBagSet; store: SessionStore; codec: SessionValueCodec } {
  const registry = new SessionBagRegistry();
  registry.register(() => new FlashBag());
  const store = new SessionStore(resolveSessionOptions({}), registry);
  const codec = new SessionValueCodec(store.storageCache);
  return { bags: new SessionBagSet(registry, codec, store.storageCache), store, codec };
}

const noData = async (): Promise<ReadonlyMap<string, string>> => new Map();

describe('SessionBagSet', () => {
  it('creates a registry bag on first use and initializes it from the loaded data once', async () => {
    const { bags, codec } = setUp();
    let loads = 0;
    const stored = new Map([[bagEntryKey(new FlashBag()), codec.encode('flashes', { info: ['hi'] })]]);
    const load = async (): Promise<ReadonlyMap<string, string>> => {
      loads += 1;
      return stored;
    };
    const flashes = (await bags.get('flashes', load)) as FlashBag;
    expect(flashes.peek('info')).toEqual(['hi']);
    expect(await bags.get('flashes', load)).toBe(flashes);
    expect(loads).toBe(1);
    expect(bags.isInUse()).toBe(true);
    // A reload: an unchanged bag is initialized again from the fresh data on its next use.
    bags.rebase(new Map());
    expect(bags.isInUse()).toBe(false);
    await bags.get('flashes', load);
    expect(loads).toBe(2);
  });

  it('names the registered bags when asked for an unknown one', async () => {
    const { bags } = setUp();
    bags.register(new AttributeBag('cart'));
    await expect(bags.get('nope', noData)).rejects.toThrow('Registered bags: attributes, metadata, flashes, cart.');
  });

  it('refuses a second bag of a taken name', () => {
    const { bags } = setUp();
    expect(() => bags.register(new AttributeBag('flashes'))).toThrow(InvalidArgumentException);
    expect(() => bags.register(new AttributeBag('metadata'))).toThrow(InvalidArgumentException);
    bags.register(new AttributeBag('cart'));
    expect(() => bags.register(new AttributeBag('cart'))).toThrow(InvalidArgumentException);
  });

  it('collects only bags whose storable data differs from what is stored', async () => {
    const { bags, codec } = setUp();
    const cart = new AttributeBag('cart');
    bags.register(cart);
    const changes = new SessionChangeSet();
    await bags.get('cart', noData);
    expect(bags.collectChanges(changes)).toEqual([]);
    cart.set('item', 1);
    expect(bags.collectChanges(changes)).toEqual([cart]);
    expect(changes.valueOf(bagEntryKey(cart))).toBe(codec.encode('cart', { item: 1 }));
    // Once written, the same content is no change any more.
    bags.acknowledge(changes.snapshot());
    expect(bags.collectChanges(new SessionChangeSet())).toEqual([]);
  });

  it('merges a mergeable bag onto what another request stored meanwhile', async () => {
    const { bags, store, codec } = setUp();
    const cart = new AttributeBag('cart');
    bags.register(cart);
    await bags.get('cart', noData);
    cart.set('mine', 1);
    const changed = bags.collectChanges(new SessionChangeSet());
    const theirs = codec.encode('cart', { theirs: 2 });
    await store.write(
      's1',
      { metadataKey: metadataKeyOf('x'), create: true, changes: new Map([[bagEntryKey(cart), theirs]]), retiredKeys: [] },
      0,
    );
    const merged = await bags.merge('s1', changed);
    expect(codec.decode(merged.get(bagEntryKey(cart))!)).toEqual({ theirs: 2, mine: 1 });
  });

  it('offers the session data as the attribute bag, pending changes on top', () => {
    const { bags, codec } = setUp();
    const changes = new SessionChangeSet();
    const stored = new Map([
      ['a', codec.encode('a', 1)],
      ['~bag:flashes', codec.encode('f', {})],
    ]);
    const attributes = bags.attributes(() => stored, changes);
    expect(attributes.all()).toEqual({ a: 1 });
    attributes.set('b', 2);
    attributes.remove('a');
    expect(attributes.all()).toEqual({ b: 2 });
    expect(changes.valueOf('a')).toBeNull();
    expect(bags.attributes(() => stored, changes)).toBe(attributes);
  });
});
