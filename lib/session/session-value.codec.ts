import type { VariableFrontend } from '../cache/variable.frontend.js';
import { DataNotSerializableException } from '../errors/data-not-serializable.exception.js';

/**
 * Serializes session values (data entries and bags) with the storage cache's serializer.
 * Values are serialized when they are put, so an unstorable value fails at `putData` time,
 * never at commit time.
 */
export class SessionValueCodec {
  constructor(private readonly cache: VariableFrontend) {}

  /** @throws DataNotSerializableException naming `key`. */
  encode(key: string, value: unknown): string {
    try {
      return this.cache.encode(value);
    } catch (error) {
      throw DataNotSerializableException.create(key, (error as Error).message);
    }
  }

  // The caller names the type it stored under the key (the serializer cannot check it).
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
  decode<T = unknown>(raw: string): T {
    return this.cache.decode<T>(raw);
  }
}
