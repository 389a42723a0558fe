import { afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { MemoryBackend } from '../../lib/cache/memory.backend.js';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import type { ResolvedSessionOptions } from '../../lib/session/session-module.options.js';
import { Session } from '../../lib/session/session.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { unlockedCommitContract } from '../contract/unlocked-commit.contract.js';
import { created, resumed } from '../support/session-requests.js';

/*
 * The default stores (two MemoryBackends and a MemoryLocker, as SessionModule makes them without
 * options): the storage backend checks the locker's locks in the same synchronous step as its
 * write, so a commit nobody else holds the lock of takes no lock. The properties the shortcut
 * must keep from "acquire, write, release", as on Redis and PostgreSQL.
 */
describe('Unlocked commits on the default memory stores (WriteGuard.unlocked, checked in the write)', () => {
  let options: ResolvedSessionOptions;
  let store: SessionStore;

  beforeAll(() => {
    options = resolveSessionOptions({ lock: { waitTimeout: 5000, ttl: 5000 } });
    store = new SessionStore(options);
  });

  unlockedCommitContract(
    'memory',
    () => ({ metadataBackend: options.metadataBackend, storageBackend: options.storageBackend, locker: options.locker }),
    () => store,
    () => new MemoryBackend(),
  );

  describe('commits that write metadata, and logins, without the lock', () => {
    afterEach(() => {
      jest.restoreAllMocks();
    });

    it('take no lock while nobody holds it: a tag, a renewal, a login', async () => {
      expect(store.commitsUnlocked).toBe(true);
      const acquire = jest.spyOn(options.locker, 'acquire');
      const id = await created(store, { a: 1 });
      const tagged = await resumed(store, id);
      await tagged.addTag('blue');
      await tagged.commit();
      const renewed = await resumed(store, id);
      renewed.renewId();
      await renewed.commit();
      const login = await resumed(store, renewed.getId());
      login.bindToUser('ann');
      await login.commit();
      expect(acquire).not.toHaveBeenCalled();
      const after = await resumed(store, login.getId());
      expect(after.getUserId()).toBe('ann');
      expect(after.getTags()).toContain('blue');
      expect(await after.getAllData()).toEqual({ a: 1 });
      const old = new Session(store, { cookieIds: [id], cookieName: 'sid' });
      await old.resume();
      expect(old.isStarted()).toBe(false);
    });

    it('a login carries over what another request wrote after it resumed', async () => {
      const id = await created(store, { a: 1 });
      const login = await resumed(store, id);
      const other = await resumed(store, id);
      await other.putData('b', 2);
      await other.commit();
      login.bindToUser('bob');
      await login.putData('c', 3);
      await login.commit();
      expect(await (await resumed(store, login.getId())).getAllData()).toEqual({ a: 1, b: 2, c: 3 });
    });

    it('a commit whose metadata another request rewrote after it resumed goes under the lock and keeps that change', async () => {
      const id = await created(store, { a: 1 });
      const late = await resumed(store, id);
      const other = await resumed(store, id);
      await other.addTag('green');
      await other.commit();
      const acquire = jest.spyOn(options.locker, 'acquire');
      await late.addTag('blue');
      await late.commit();
      expect(acquire).toHaveBeenCalledTimes(1);
      expect((await resumed(store, id)).getTags().sort()).toEqual(['blue', 'green']);
      // The same for a login: another request tags the session between its resume and its commit.
      const login = await resumed(store, id);
      const tagger = await resumed(store, id);
      await tagger.addTag('red');
      await tagger.commit();
      login.bindToUser('cy');
      await login.commit();
      const after = await resumed(store, login.getId());
      expect(after.getTags()).toEqual(expect.arrayContaining(['blue', 'green', 'red']));
      expect(after.getUserId()).toBe('cy');
    });

    it('a metadata commit while another request holds the lock waits for it, then merges what the holder wrote', async () => {
      const id = await created(store, { a: 1 });
      const waiting = await resumed(store, id);
      const holder = await resumed(store, id);
      await holder.open();
      await waiting.addTag('blue');
      let done = false;
      const commit = waiting.commit().then(() => (done = true));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(done).toBe(false);
      await holder.addTag('green');
      await holder.save();
      await commit;
      expect((await resumed(store, id)).getTags().sort()).toEqual(['blue', 'green']);
    });
  });
});
