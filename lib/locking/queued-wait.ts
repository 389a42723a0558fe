import { LockTimeoutException } from '../errors/lock-timeout.exception.js';
import { lockerClosedError } from './lock-options.check.js';
import type { Sleeper } from './lock.sleeper.js';
import type { SessionLock } from './session-locker.interface.js';

/** What one look at the store answers: the fence when it granted the lock, else null. */
export interface LockLook {
  readonly fence: number | null;
}

/**
 * The engine's side of a queued `acquire()` (see `waitInQueue`): how it looks at the store,
 * listens for wake-ups and gives up its place in the queue.
 */
export interface QueuedWait<L extends LockLook> {
  /** One look: takes the lock if the waiter is first in line, else keeps its place. */
  look(): Promise<L>;
  /** The lock a look granted; `first`: by the first look (sent before `acquire()` returned). */
  grant(look: L & { readonly fence: number }, first: boolean): SessionLock;
  /** Milliseconds to sleep after a look that did not grant the lock (the engine's hint). */
  retryIn(look: L): number;
  /** Registers the sleeper where wake-ups are heard already; answers whether they are. */
  join(): boolean;
  /** Starts hearing wake-ups (the sleeper is registered). */
  listen(): Promise<void>;
  leave(): void;
  /**
   * Whether to register again after each sleep: where the listening connection may break
   * meanwhile (PostgreSQL), the next sleep must not rely on it.
   */
  readonly rejoinAfterSleep: boolean;
  /** Gives up the waiter's place in the queue. */
  cancel(): Promise<void>;
}

/**
 * Queues and sleeps until a wake-up names the waiter (`sleeper`) or a timer runs out, then
 * looks again, until the lock is granted or `waitTimeout` has passed. The waiter must hear
 * wake-ups before a look that leaves it waiting, or the release right after that look could go
 * unheard: where they are heard already (other waiters: the contended case), it joins before
 * its first look, so a handoff costs one failed look, one successful one and the release;
 * otherwise it starts listening after the first look and looks again. Written once for every
 * locker that queues waiters across processes (Redis, PostgreSQL).
 * @throws LockTimeoutException after `waitTimeout`; the closed error when `isClosing()`.
 */
export async function waitInQueue<L extends LockLook>(
  wait: QueuedWait<L>,
  sleeper: Sleeper,
  waitTimeout: number,
  refreshEvery: number,
  isClosing: () => boolean,
): Promise<SessionLock> {
  const deadline = performance.now() + waitTimeout;
  let listening = wait.join();
  /** A look is under way: if it fails, it has abandoned the token itself. */
  let looking = false;
  let first = true;
  try {
    for (;;) {
      if (isClosing()) throw lockerClosedError();
      sleeper.reset();
      looking = true;
      const look = await wait.look();
      looking = false;
      if (look.fence !== null) {
        const lock = wait.grant(look as L & { readonly fence: number }, first);
        if (!isClosing()) return lock;
        await lock.release().catch(() => false);
        throw lockerClosedError();
      }
      first = false;
      const remaining = deadline - performance.now();
      if (remaining <= 0) break;
      if (!listening) {
        await wait.listen();
        listening = true;
        continue; // a release between that look and the listening went unheard
      }
      await sleeper.sleep(Math.min(remaining, wait.retryIn(look), refreshEvery));
      if (wait.rejoinAfterSleep) listening = wait.join();
    }
  } catch (error) {
    if (!looking) await wait.cancel().catch(() => undefined);
    throw error;
  } finally {
    wait.leave();
  }
  await wait.cancel();
  throw LockTimeoutException.create(waitTimeout);
}
