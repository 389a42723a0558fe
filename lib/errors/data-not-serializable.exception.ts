import { SessionError } from './session.error.js';

/**
 * Thrown by `putData()` (never at commit time) when a value cannot be stored: functions,
 * symbols, class instances, cyclic structures, or anything the configured serializer rejects.
 */
export class DataNotSerializableException extends SessionError {
  static override readonly httpStatus: number = 400;
  static create(key: string, reason: string): DataNotSerializableException {
    return new this(
      `Cannot store session key "${key}": ${reason}. Session values must be plain data ` +
        `(objects, arrays, strings, numbers, booleans, null, Date, Map, Set, BigInt); convert ` +
        `class instances to plain objects before putData().`,
    );
  }
}
