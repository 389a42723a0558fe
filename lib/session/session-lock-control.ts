import { LockException } from '../errors/lock.exception.js';
import type { SessionLock } from '../locking/session-locker.interface.js';
import type { SessionLockState } from './session-data.interface.js';

/**
 * The Aerys lock states of one session: `unlocked`, `pending` (while `open()` waits for the
 * lock) and `locked` (a lock is held until `save()`, `unlock()` or the end of the request).
 * It holds the lock; taking it and what happens under it is the session's business.
 */
export class SessionLockControl {
  private state: SessionLockState = 'unlocked';
  private heldLock: SessionLock | undefined;
  private pendingLock: Promise<SessionLock> | undefined;

  getState(): SessionLockState {
    return this.state;
  }

  /** The lock taken by `open()`, if held. */
  get held(): SessionLock | undefined {
    return this.heldLock;
  }

  /** True when no lock is held or pending. */
  isIdle(): boolean {
    return this.heldLock === undefined && this.state === 'unlocked';
  }

  /**
   * Aerys: every operation but `unlock()` fails while the lock is pending.
   * @throws LockException
   */
  assertNotPending(operation: string): void {
    if (this.state === 'pending') {
      throw new LockException(
        `Cannot ${operation} while the session lock is pending: await open() first (only unlock() is allowed meanwhile).`,
      );
    }
  }

  /**
   * Waits for `lock` in the pending state and holds it once granted; back to unlocked when
   * it fails (the error is rethrown).
   */
  async acquire(lock: Promise<SessionLock>): Promise<void> {
    this.state = 'pending';
    this.pendingLock = lock;
    let granted: SessionLock;
    try {
      granted = await lock;
    } catch (error) {
      this.state = 'unlocked';
      throw error;
    } finally {
      this.pendingLock = undefined;
    }
    this.heldLock = granted;
    this.state = 'locked';
  }

  /** For `unlock()` while pending: waits until the pending lock is granted (or fails), so it can be released. */
  async settle(): Promise<void> {
    if (this.state !== 'pending' || this.pendingLock === undefined) return;
    try {
      this.heldLock = await this.pendingLock;
    } catch {
      /* the open() call reports its own failure */
    }
  }

  /** Gives up the held lock without releasing it (the caller releases it); back to unlocked. */
  detach(): SessionLock | undefined {
    const lock = this.heldLock;
    this.heldLock = undefined;
    this.state = 'unlocked';
    return lock;
  }

  /** Releases the held lock, if any; a failed release leaves the lock to expire (its ttl). */
  async release(): Promise<void> {
    const lock = this.detach();
    if (lock) await lock.release().catch(() => false);
  }
}
