import { SessionError } from '../errors/session.error.js';
import { StoreUnavailableException } from '../errors/store-unavailable.exception.js';

/**
 * The one place a store failure becomes `StoreUnavailableException`. An error that is already
 * typed (any `SessionError`, e.g. wrapped by a backend below) passes unchanged, so however many
 * layers catch it, a driver error is wrapped once and its cause stays the driver error.
 * @param operation what failed, e.g. `redis get`.
 */
export function storeFailure(operation: string, error: unknown): SessionError {
  return error instanceof SessionError ? error : StoreUnavailableException.create(operation, error);
}

/** Runs `work`; a failure is rethrown as {@link storeFailure} answers it. */
export async function attemptStore<T>(operation: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw storeFailure(operation, error);
  }
}
