import { beforeAll, describe } from '@jest/globals';
import { MemoryBackend } from '../../lib/cache/memory.backend.js';
import { resolveSessionOptions } from '../../lib/nest/session-options.resolver.js';
import type { ResolvedSessionOptions } from '../../lib/session/session-module.options.js';
import { SessionStore } from '../../lib/session/session.store.js';
import { unlockedCommitContract } from '../contract/unlocked-commit.contract.js';

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
    true,
    true,
  );
});
