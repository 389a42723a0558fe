import { SessionError } from './session.error.js';

/** Thrown at boot for a bad `SessionModule` option; the message names the option. */
export class InvalidOptionException extends SessionError {
  static create(option: string, problem: string): InvalidOptionException {
    return new this(`SessionModule option "${option}" ${problem}.`);
  }
}

/**
 * An option value as an error message shows it: numbers as JavaScript prints them (`NaN`,
 * `Infinity`, which JSON would show as `null`), strings quoted, anything else as JSON.
 */
export function shownOptionValue(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (value === undefined) return 'undefined';
  if (typeof value === 'function') return 'a function';
  try {
    // undefined for a symbol
    const json = JSON.stringify(value) as string | undefined;
    return json ?? typeof value;
  } catch {
    return Object.prototype.toString.call(value);
  }
}
