/**
 * Module resolution hook for the lock benchmark's child process: the sample app imports
 * `nest-session`, which Node would resolve through package.json `exports` to `dist/lib` (built
 * by `npm run build`, possibly stale). Point it at the copy compiled next to the benchmark.
 */
import type { ResolveHook } from 'node:module';

const LIB_INDEX = new URL('../../lib/index.js', import.meta.url).href;

export const resolve: ResolveHook = (specifier, context, nextResolve) =>
  specifier === 'nest-session' ? { url: LIB_INDEX, shortCircuit: true } : nextResolve(specifier, context);
