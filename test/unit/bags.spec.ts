import { describe, expect, it } from '@jest/globals';
import { AttributeBag, AutoExpireFlashBag, FlashBag } from 'nest-session';

describe('AttributeBag', () => {
  it('has/get/set/all/replace/remove/clear', () => {
    const bag = new AttributeBag('attrs');
    bag.initialize({ a: 1 });
    expect(bag.has('a')).toBe(true);
    expect(bag.get('missing', 'd')).toBe('d');
    bag.set('b', 2);
    expect(bag.all()).toEqual({ a: 1, b: 2 });
    expect(bag.remove('a')).toBe(1);
    bag.replace({ x: 'y' });
    expect(bag.all()).toEqual({ x: 'y' });
    expect(bag.clear()).toEqual({ x: 'y' });
    expect(bag.getStorableData()).toBeUndefined(); // an empty bag stores nothing
  });

  it("merge re-applies this request's sets and removes onto fresh data", () => {
    const bag = new AttributeBag('attrs');
    bag.initialize({ keep: 1, gone: 2 });
    bag.set('mine', 3);
    bag.remove('gone');
    bag.merge({ keep: 1, gone: 2, theirs: 4 });
    expect(bag.all()).toEqual({ keep: 1, theirs: 4, mine: 3 });
  });
});

describe('FlashBag', () => {
  it('add/peek/peekAll/get/all/set/setAll/has/keys/clear', () => {
    const bag = new FlashBag();
    bag.initialize(undefined);
    bag.add('success', 'saved');
    bag.add('success', 'again');
    bag.add('error', 'oops');
    expect(bag.peek('success')).toEqual(['saved', 'again']);
    expect(bag.has('error')).toBe(true);
    expect(bag.keys()).toEqual(['success', 'error']);
    expect(bag.get('error')).toEqual(['oops']);
    expect(bag.has('error')).toBe(false);
    expect(bag.get('error', ['none'])).toEqual(['none']);
    bag.set('info', 'one');
    expect(bag.peekAll()).toEqual({ success: ['saved', 'again'], info: ['one'] });
    expect(bag.all()).toEqual({ success: ['saved', 'again'], info: ['one'] });
    expect(bag.getStorableData()).toBeUndefined();
    bag.setAll({ warn: ['w'] });
    expect(bag.clear()).toEqual({ warn: ['w'] });
  });

  it('merge keeps messages another request added and drops only what this one consumed', () => {
    const bag = new FlashBag();
    bag.initialize({ info: ['old'] });
    expect(bag.get('info')).toEqual(['old']);
    bag.add('success', 'mine');
    bag.merge({ info: ['old', 'theirs'], success: ['theirs too'] });
    expect(bag.peekAll()).toEqual({ info: ['theirs'], success: ['theirs too', 'mine'] });
  });
});

describe('committed(): a written bag forgets the changes it wrote', () => {
  it('FlashBag: written adds are not re-applied, a written message read later counts as consumed', () => {
    const bag = new FlashBag();
    bag.initialize(undefined);
    bag.add('info', 'm1');
    bag.committed({ info: ['m1'] });
    bag.add('info', 'm3');
    bag.merge({ info: ['m1', 'm2'] });
    expect(bag.peekAll()).toEqual({ info: ['m1', 'm2', 'm3'] });

    const reader = new FlashBag();
    reader.initialize(undefined);
    reader.add('info', { text: 'm1' });
    reader.committed({ info: [{ text: 'm1' }] });
    expect(reader.get('info')).toEqual([{ text: 'm1' }]);
    reader.merge({ info: [{ text: 'm1' }, 'm2'] });
    expect(reader.peekAll()).toEqual({ info: ['m2'] });
  });

  it('FlashBag: changes made after the written value was taken stay', () => {
    const bag = new FlashBag();
    bag.initialize({ info: ['old'], warn: ['w'] });
    bag.add('info', 'written');
    const stored = structuredClone(bag.getStorableData()); // as written and decoded
    bag.add('info', 'in flight');
    expect(bag.get('warn')).toEqual(['w']);
    bag.committed(stored);
    bag.merge({ info: ['old', 'written', 'theirs'], warn: ['w', 'w2'] });
    expect(bag.peekAll()).toEqual({ info: ['old', 'written', 'theirs', 'in flight'], warn: ['w2'] });
  });

  it('AttributeBag: a key written before is not set again over what another request stored', () => {
    const bag = new AttributeBag();
    bag.initialize(undefined);
    bag.set('a', 1);
    bag.set('gone', true);
    bag.committed({ a: 1, gone: true });
    bag.remove('gone');
    bag.set('b', 2);
    bag.merge({ a: 'theirs', gone: true, c: 3 });
    expect(bag.all()).toEqual({ a: 'theirs', b: 2, c: 3 });
  });

  it('AutoExpireFlashBag: queued messages written are not queued again; displayed ones are not shown again', () => {
    const bag = new AutoExpireFlashBag();
    bag.initialize({ display: {}, new: { info: ['shown now'] } });
    expect(bag.peek('info')).toEqual(['shown now']);
    bag.add('info', 'q1');
    bag.committed(structuredClone(bag.getStorableData()));
    expect(bag.peek('info')).toEqual(['shown now']); // committing does not move messages
    bag.add('info', 'q2');
    bag.merge({ display: {}, new: { info: ['q1', 'theirs'] } });
    expect(bag.getStorableData()).toEqual({ display: {}, new: { info: ['q1', 'theirs', 'q2'] } });

    const taker = new AutoExpireFlashBag();
    taker.initialize({ display: {}, new: { info: ['seen'] } });
    taker.merge({ display: {}, new: { info: ['seen', 'theirs'] } });
    expect(taker.getStorableData()).toEqual({ display: {}, new: { info: ['theirs'] } });
  });
});

describe('AutoExpireFlashBag', () => {
  it('shows messages in the next request and drops them after it, read or not', () => {
    const first = new AutoExpireFlashBag();
    first.initialize(undefined);
    first.add('info', 'next page');
    expect(first.peek('info')).toEqual([]); // not for this request
    const stored = first.getStorableData();

    const second = new AutoExpireFlashBag();
    second.initialize(stored);
    expect(second.peek('info')).toEqual(['next page']);
    expect(second.getStorableData()).toBeUndefined(); // unread, still gone after this request

    const third = new AutoExpireFlashBag();
    third.initialize(second.getStorableData());
    expect(third.all()).toEqual({});
  });
});
