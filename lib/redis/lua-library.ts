import { createHash } from 'node:crypto';
import { LuaScript } from './lua-script.js';

/**
 * Lua code that runs as a Redis function (Redis >= 7: `FUNCTION LOAD` once per server, `FCALL`
 * per call) and, the same code, as an EVAL script where functions are unavailable (older
 * servers, an ACL without FUNCTION). A function's library is set up once when loaded: an
 * EVALSHA of the same code re-runs all its definitions on every call, which in Redis' Lua costs
 * more than a small write (measured in the README's benchmark notes).
 *
 * `definitions` run once (top-level locals the body uses); `body` runs per call with `KEYS` and
 * `ARGV` as an EVAL script has them, and ends with a `return`. The library's and the
 * function's names carry a digest of the code, so two versions of this package on one Redis
 * (a rolling upgrade) never replace each other's function.
 */
export class LuaLibrary {
  /** The library name (`FUNCTION LOAD`, `FUNCTION DELETE`). */
  readonly name: string;
  /** The function `FCALL` calls. */
  readonly functionName: string;
  /** The `FUNCTION LOAD` source. */
  readonly source: string;
  /** The same code as an EVAL script. */
  readonly script: LuaScript;

  constructor(baseName: string, definitions: string, body: string) {
    const digest = createHash('sha1').update(definitions).update('\0').update(body).digest('hex').slice(0, 16);
    this.name = `${baseName}_${digest}`;
    this.functionName = `${this.name}_call`;
    this.source =
      `#!lua name=${this.name}\n${definitions}\n` +
      `redis.register_function('${this.functionName}', function(KEYS, ARGV)\n${body}\nend)\n`;
    this.script = new LuaScript(`${definitions}\n${body}`);
  }
}
