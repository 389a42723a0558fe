/** Creates public session ids and recognises well-formed ones before any store look-up. */
export interface SessionIdGenerator {
  /** A new id: at least 128 bits from a CSPRNG, URL-safe, without `.`. */
  generate(): string;
  /** Whether `id` has the exact shape `generate()` produces (cheap; no I/O). */
  isValid(id: string): boolean;
}

/** Injection token (and type) for the configured id generator. */
export const SessionIdGenerator = Symbol('SessionIdGenerator');
