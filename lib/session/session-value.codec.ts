import type { VariableFrontend } from '../cache/variable.frontend.js';
import { DataNotSerializableException } from '../errors/data-not-serializable.exception.js';
import { SessionLimitExceededException } from '../errors/session-limit-exceeded.exception.js';

/**
 * Serializes session values (data entries and bags) with the storage cache's serializer.
 * Values are serialized when they are put, so an unstorable value fails at `putData` time,
 * never at commit time. The size cap (`maxEntryBytes`) is checked here, above every backend,
 * so Redis, cache-manager and any other store get it, and its error names the caller's key,
 * never the storage entry.
 */
export class SessionValueCodec {
  /**
   * @param maxEntryBytes largest serialized value in UTF-8 bytes. @default Infinity
   */
  constructor(
    private readonly cache: VariableFrontend,
    private readonly maxEntryBytes = Infinity,
  ) {}

  /**
   * @throws DataNotSerializableException naming `key`.
   * @throws SessionLimitExceededException when the serialized value is larger than `maxEntryBytes`.
   */
  encode(key: string, value: unknown): string {
    let raw: string;
    try {
      raw = this.cache.encode(value);
    } catch (error) {
      throw DataNotSerializableException.create(key, (error as Error).message);
    }
    // A UTF-16 code unit takes at most 3 UTF-8 bytes: most values need no byte count.
    if (raw.length * 3 > this.maxEntryBytes) {
      const bytes = Buffer.byteLength(raw, 'utf8');
      if (bytes > this.maxEntryBytes) throw SessionLimitExceededException.entryTooLarge(key, bytes, this.maxEntryBytes);
    }
    return raw;
  }

  // The caller names the type it stored under the key (the serializer cannot check it).
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
  decode<T = unknown>(raw: string): T {
    return this.cache.decode<T>(raw);
  }
}
