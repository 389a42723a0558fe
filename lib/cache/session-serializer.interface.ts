/**
 * Turns session values into strings and back. One serializer is used for every value, and it
 * must round-trip Date, Map, Set and BigInt. Implementations must reject what they cannot round-trip by throwing
 * (the session turns that into `DataNotSerializableException` at `putData` time) and must
 * never revive `__proto__`.
 */
export interface SessionSerializer {
  /** @throws Error (any) with a message saying what cannot be stored and where. */
  serialize(value: unknown): string;
  deserialize(data: string): unknown;
}

/** Injection token (and type) for the configured serializer. */
export const SessionSerializer = Symbol('SessionSerializer');
