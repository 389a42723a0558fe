import type { RedisLockerClient } from '../../lib/redis/redis.locker.js';

/**
 * `client` with every command and script call (sendCommand, evalSha, eval: what the backends
 * and the locker send) passed through `gate`, which gets the call as a thunk and answers its
 * reply. Everything else (Pub/Sub through `duplicate()`, `isOpen`, ...) reaches the client as is.
 */
export function tapCommands(
  client: RedisLockerClient,
  gate: (send: () => Promise<unknown>) => Promise<unknown>,
): RedisLockerClient {
  return new Proxy(client, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      const method = value as (...args: unknown[]) => Promise<unknown>;
      if (property === 'sendCommand' || property === 'evalSha' || property === 'eval') {
        return (...args: unknown[]) => gate(() => method.apply(target, args));
      }
      return method.bind(target);
    },
  });
}
