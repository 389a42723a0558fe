import { CronTime } from 'cron';
import { InvalidOptionException, shownOptionValue } from '../errors/invalid-option.exception.js';
import type { ResolvedGarbageCollectionOptions, SessionGarbageCollectionOptions } from '../session/session-module.options.js';

/** Every five minutes. */
export const DEFAULT_GC_CRON = '*/5 * * * *';
const DEFAULT_GC_PROBABILITY = 1;
const DEFAULT_GC_MAXIMUM_PER_RUN = 1000;

/**
 * Merges defaults into the `garbageCollection` option, validates (the cron expression is parsed
 * now, so a typo fails at boot) and freezes it.
 * @throws InvalidOptionException naming the bad field.
 */
export function resolveGarbageCollectionOptions(
  options: SessionGarbageCollectionOptions | undefined,
): ResolvedGarbageCollectionOptions {
  const given: unknown = options; // options may come from untyped configuration
  if (given !== undefined && (typeof given !== 'object' || given === null)) {
    throw InvalidOptionException.create(
      'garbageCollection',
      `must be an object { probability?, maximumPerRun?, cron? } (got ${JSON.stringify(options)})`,
    );
  }
  const resolved = {
    probability: options?.probability ?? DEFAULT_GC_PROBABILITY,
    maximumPerRun: options?.maximumPerRun ?? DEFAULT_GC_MAXIMUM_PER_RUN,
    cron: options?.cron ?? DEFAULT_GC_CRON,
  };
  const { probability, maximumPerRun, cron } = resolved;
  if (typeof probability !== 'number' || !Number.isFinite(probability) || probability < 0 || probability > 100) {
    throw InvalidOptionException.create(
      'garbageCollection.probability',
      `must be a percentage from 0 to 100, decimals allowed (got ${shownOptionValue(probability)})`,
    );
  }
  if (!Number.isSafeInteger(maximumPerRun) || maximumPerRun < 1) {
    throw InvalidOptionException.create(
      'garbageCollection.maximumPerRun',
      `must be a whole number >= 1 (got ${shownOptionValue(maximumPerRun)})`,
    );
  }
  if (cron !== false) {
    if (typeof cron !== 'string' || cron.trim() === '') {
      throw InvalidOptionException.create(
        'garbageCollection.cron',
        `must be a cron expression such as '${DEFAULT_GC_CRON}', or false to schedule no GC (got ${JSON.stringify(cron)})`,
      );
    }
    try {
      new CronTime(cron);
    } catch (error) {
      throw InvalidOptionException.create(
        'garbageCollection.cron',
        `is not a valid cron expression (${JSON.stringify(cron)}: ${(error as Error).message}); use 5 or 6 fields, e.g. '${DEFAULT_GC_CRON}', or false`,
      );
    }
  }
  return Object.freeze(resolved);
}
