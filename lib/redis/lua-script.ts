import { createHash } from 'node:crypto';

/**
 * A Lua script and its SHA1, computed locally so EVALSHA needs no round trip to learn it.
 * Shared by the Redis backend and the Redis locker; sent by `redis-client.adapter.ts`.
 */
export class LuaScript {
  readonly sha: string;

  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }
}
