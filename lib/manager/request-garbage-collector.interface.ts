/**
 * Probabilistic garbage collection after responses: what the HTTP layer calls once a response
 * is out, implemented by SessionManager.
 */
export interface RequestGarbageCollector {
  /** Rolls the configured GC probability for one request. */
  isGarbageCollectionDue(): boolean;
  /** One GC run; failures are logged by the implementation. */
  collectGarbage(): Promise<number>;
}
