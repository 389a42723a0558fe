import { instrumentBackend } from '../cache/instrumented.backend.js';
import { instrumentLocker } from '../locking/instrumented.locker.js';
import type { ResolvedSessionOptions } from '../session/session-module.options.js';

/**
 * The options with backends and locker wrapped so that `instrumentation` sees store errors and
 * lock waits; the options themselves when there is no instrumentation (nothing wrapped, no cost).
 * Runs after validation, so the checks (e.g. "two backend instances") see the user's objects.
 */
export function instrumentOptions(options: ResolvedSessionOptions): ResolvedSessionOptions {
  const hooks = options.instrumentation;
  if (hooks === undefined) return options;
  const storeError = hooks.storeError?.bind(hooks);
  const locker = instrumentLocker(options.locker, {
    storeError,
    lockAcquired: hooks.lockAcquired?.bind(hooks),
    lockTimedOut: hooks.lockTimedOut?.bind(hooks),
  });
  // The backends keep naming the locker they check (unlocked commits) and follow (reads with the
  // lock): as the wrapped one, which is the store's.
  const standIn = { locker: options.locker, wrapper: locker };
  return {
    ...options,
    metadataBackend: instrumentBackend(options.metadataBackend, 'metadata', { storeError }, standIn),
    storageBackend: instrumentBackend(options.storageBackend, 'storage', { storeError }, standIn),
    locker,
  };
}
