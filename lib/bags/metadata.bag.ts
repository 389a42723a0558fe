/** How the metadata bag reaches the session it describes. */
export interface MetadataBagSource {
  /** The timestamps of the session's metadata entry (ms since the epoch). */
  metadata(): { readonly createdAt: number; readonly lastActivity: number };
  cookieLifetime(): number;
  stampNew(lifetime?: number): void;
  updateThreshold(): number;
}

/**
 * Symfony's `MetadataBag`, as a view of the session's metadata entry (which the metadata
 * cache already keeps, so it costs no storage entry of its own): when the session was
 * created, when it was last used, and its cookie lifetime. "Last used" is rewritten at most
 * once per update threshold (the module's `updateGracePeriod`), not on every request.
 */
export class MetadataBag {
  constructor(private readonly source: MetadataBagSource) {}

  getName(): string {
    return 'metadata';
  }
  /** Creation time, ms since the epoch. */
  getCreated(): number {
    return this.source.metadata().createdAt;
  }
  /** Last-activity time as stored, ms since the epoch (see `getUpdateThreshold`). */
  getLastUsed(): number {
    return this.source.metadata().lastActivity;
  }
  /** Cookie lifetime in seconds; 0 = browser-session cookie. */
  getLifetime(): number {
    return this.source.cookieLifetime();
  }
  /** Seconds within which "last used" is not rewritten for an unchanged session. */
  getUpdateThreshold(): number {
    return this.source.updateThreshold();
  }
  /** Marks the session as created now (e.g. after a privilege change), optionally with a new lifetime in seconds. */
  stampNew(lifetime?: number): void {
    this.source.stampNew(lifetime);
  }
}
