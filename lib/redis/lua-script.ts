import { createHash } from 'node:crypto';

/**
 * A Lua script and its SHA1, computed locally so EVALSHA needs no round trip to learn it.
 * Shared by the Redis backend and the Redis locker.
 */
export class LuaScript {
  readonly sha: string;

  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }
}

/** Whether Redis answered that it does not know a script (first use, restart, SCRIPT FLUSH). */
export function isNoScriptError(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}
