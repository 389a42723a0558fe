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
