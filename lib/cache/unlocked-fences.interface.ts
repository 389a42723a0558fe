/**
 * What an in-process backend needs of an in-process locker to apply a guarded write without the
 * lock (`WriteGuard.unlocked`): in the same synchronous step, whether anybody holds or awaits the
 * lock of a key, and if nobody does, a fresh fence from it. `MemoryLocker` implements it; a
 * `MemoryBackend` given one (option `locks`) names it as its `checksLocksOf`.
 */
export interface UnlockedFences {
  /**
   * A fresh fence (greater than every fence the locker handed out before) when nobody holds or
   * awaits the lock of `key`; undefined when somebody does (or the locker is closed).
   */
  drawFenceIfFree(key: string): number | undefined;
}
