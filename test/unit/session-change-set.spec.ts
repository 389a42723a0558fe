import { describe, expect, it } from '@jest/globals';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import { Session } from '../../lib/session/session.js';
import { SessionChangeSet } from '../../lib/session/session-change-set.js';
import { SessionStore } from '../../lib/session/session.store.js';

describe('SessionChangeSet', () => {
  it('is empty until something is recorded', () => {
    const changes = new SessionChangeSet();
    expect(changes.isEmpty()).toBe(true);
    changes.requestTouch();
    expect(changes.isEmpty()).toBe(false);
    expect(changes.hasDataChanges()).toBe(false);
    expect(changes.hasMetadataChanges()).toBe(false);
  });

  it('keeps the last value of a key, null for a removal', () => {
    const changes = new SessionChangeSet();
    changes.put('a', '1');
    changes.put('a', '2');
    changes.put('b', null);
    expect(changes.valueOf('a')).toBe('2');
    expect(changes.valueOf('b')).toBeNull();
    expect(changes.valueOf('c')).toBeUndefined();
    expect(changes.hasDataChanges()).toBe(true);
  });

  it('counts a tag as added or removed, whichever happened last', () => {
    const changes = new SessionChangeSet();
    changes.addTag('x');
    changes.removeTag('x');
    expect([...changes.addedTags]).toEqual([]);
    expect([...changes.removedTags]).toEqual(['x']);
    changes.addTag('x');
    expect([...changes.addedTags]).toEqual(['x']);
    expect([...changes.removedTags]).toEqual([]);
    expect(changes.hasMetadataChanges()).toBe(true);
  });

  it('retires an id once', () => {
    const changes = new SessionChangeSet();
    changes.retireId('old');
    changes.retireId('old');
    expect(changes.retiredIds).toEqual(['old']);
    expect(changes.hasMetadataChanges()).toBe(true);
  });

  it('snapshot() is an immutable copy: later changes do not show in it', () => {
    const changes = new SessionChangeSet();
    changes.put('a', '1');
    changes.addTag('t');
    changes.setField('permanent', true);
    changes.retireId('old');
    const snapshot = changes.snapshot();
    changes.put('a', '2');
    changes.put('b', '3');
    changes.removeTag('t');
    changes.setField('permanent', false);
    changes.retireId('older');
    expect([...snapshot.data]).toEqual([['a', '1']]);
    expect([...snapshot.addedTags]).toEqual(['t']);
    expect([...snapshot.removedTags]).toEqual([]);
    expect([...snapshot.fields]).toEqual([['permanent', true]]);
    expect(snapshot.retiredIds).toEqual(['old']);
    expect(Object.isFrozen(snapshot)).toBe(true);
  });

  it('acknowledge() of a snapshot leaves nothing pending when nothing changed meanwhile', () => {
    const changes = new SessionChangeSet();
    changes.put('a', '1');
    changes.put('gone', null);
    changes.addTag('t');
    changes.removeTag('u');
    changes.setField('lifetime', 60);
    changes.requestTouch();
    changes.retireId('old');
    changes.retireStorage('storage-old');
    changes.acknowledge(changes.snapshot());
    expect(changes.isEmpty()).toBe(true);
    expect(changes.retiredIds).toEqual([]);
    expect(changes.retiredStorageId).toBeUndefined();
  });

  it('a change made while a commit is in flight is kept for the next commit', () => {
    const changes = new SessionChangeSet();
    changes.put('a', '1');
    changes.put('same', 'x');
    changes.addTag('t');
    changes.setField('permanent', true);
    changes.retireId('old');
    const inFlight = changes.snapshot();
    // Meanwhile, in the same request:
    changes.put('a', '2'); // a new value for a key the commit writes
    changes.put('b', '3'); // a key the commit does not know
    changes.put('same', 'x'); // the same value again: written already
    changes.removeTag('t'); // undoes what the commit writes
    changes.setField('permanent', false);
    changes.retireId('newer');
    changes.acknowledge(inFlight);

    expect([...changes.data]).toEqual([
      ['a', '2'],
      ['b', '3'],
    ]);
    expect([...changes.addedTags]).toEqual([]);
    expect([...changes.removedTags]).toEqual(['t']);
    expect([...changes.fields]).toEqual([['permanent', false]]);
    expect(changes.retiredIds).toEqual(['newer']);
    const next = changes.snapshot();
    expect([...next.data.keys()]).toEqual(['a', 'b']);
  });

  it('acknowledge() forgets a field set again to the value the commit wrote', () => {
    const changes = new SessionChangeSet();
    changes.setField('userId', 'alice');
    const inFlight = changes.snapshot();
    changes.setField('userId', 'alice');
    changes.acknowledge(inFlight);
    expect(changes.fields.size).toBe(0);
  });

  it('amend() adds entries computed during the commit to the live set and to the snapshot', () => {
    const changes = new SessionChangeSet();
    changes.put('a', '1');
    const snapshot = changes.amend(changes.snapshot(), new Map([['~bag:flashes', 'merged']]));
    expect(snapshot.data.get('~bag:flashes')).toBe('merged');
    expect(changes.valueOf('~bag:flashes')).toBe('merged');
    changes.acknowledge(snapshot);
    expect(changes.isEmpty()).toBe(true);
  });

  it('discard() forgets data, tags, fields, touch and a storage move but keeps renewals; reset() forgets everything', () => {
    const changes = new SessionChangeSet();
    changes.put('a', '1');
    changes.addTag('t');
    changes.setField('permanent', true);
    changes.requestTouch();
    changes.retireId('old');
    changes.retireStorage('s');
    changes.discard();
    expect(changes.data.size + changes.addedTags.size + changes.fields.size).toBe(0);
    expect(changes.touch).toBe(false);
    expect(changes.retiredIds).toEqual(['old']);
    // Issue 11 item 2: a kept move would publish an empty storage and flush the old one.
    expect(changes.retiredStorageId).toBeUndefined();
    changes.reset();
    expect(changes.isEmpty()).toBe(true);
  });
});

describe('Session commit with changes in flight', () => {
  const store = (): SessionStore => new SessionStore(resolveSessionOptions({ lock: { waitTimeout: 200, ttl: 2000 } }));

  it('writes what was put while a commit was in flight with the next commit', async () => {
    const sessions = store();
    const session = new Session(sessions, { cookieIds: [], cookieName: 'sid' });
    session.start();
    await session.putData('a', 1);
    const first = session.commit();
    await session.putData('a', 2);
    await session.putData('b', 3);
    await first;
    expect(session.isIdle()).toBe(false);
    await session.commit();
    expect(session.isIdle()).toBe(true);

    const again = new Session(sessions, { cookieIds: [session.getId()], cookieName: 'sid' });
    await again.resume();
    expect(await again.getAllData()).toEqual({ a: 2, b: 3 });
  });

  it('keeps a tag added while a commit of a stored session was in flight', async () => {
    const sessions = store();
    const session = new Session(sessions, { cookieIds: [], cookieName: 'sid' });
    session.start();
    await session.putData('a', 1);
    await session.commit();
    await session.addTag('first');
    const commit = session.commit();
    await session.addTag('second');
    await commit;
    await session.commit();

    const again = new Session(sessions, { cookieIds: [session.getId()], cookieName: 'sid' });
    await again.resume();
    expect(again.getTags().sort()).toEqual(['first', 'second']);
  });
});
