import { jest } from '@jest/globals';

/**
 * Fakes only `Date` (move it with `jest.setSystemTime`): HTTP, store clients, timers and
 * microtasks keep running for real. Undo with `jest.useRealTimers()`.
 */
export function fakeOnlyDate(now?: Date | number): void {
  jest.useFakeTimers({
    ...(now === undefined ? {} : { now }),
    doNotFake: [
      'hrtime',
      'nextTick',
      'performance',
      'queueMicrotask',
      'requestAnimationFrame',
      'cancelAnimationFrame',
      'requestIdleCallback',
      'cancelIdleCallback',
      'setImmediate',
      'clearImmediate',
      'setInterval',
      'clearInterval',
      'setTimeout',
      'clearTimeout',
    ],
  });
}
