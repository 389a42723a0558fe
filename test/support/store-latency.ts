import type { TaggableBackend } from '../../lib/cache/taggable-backend.interface.js';

/**
 * `backend` with every call answered after 0-3 ms of real time (busy on the event loop's check
 * phase, so fake Date stays put), drawn from a PRNG seeded with `seed`: a store with latency,
 * in which calls that a request sends together finish in a different order than they were sent
 * (what PostgreSQL or a remote Redis does), reproducibly per seed.
 */
export function withLatency(backend: TaggableBackend, seed: number): TaggableBackend {
  let state = seed >>> 0 || 1;
  const nextDelay = (): number => {
    // xorshift32
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % 4;
  };
  const wait = (ms: number) =>
    new Promise<void>((resolve) => {
      const start = performance.now();
      const spin = () => (performance.now() - start >= ms ? resolve() : setImmediate(spin));
      setImmediate(spin);
    });
  return new Proxy(backend, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      const method = value as (...args: unknown[]) => unknown;
      return async (...args: unknown[]) => {
        await wait(nextDelay());
        return method.apply(target, args);
      };
    },
  });
}
