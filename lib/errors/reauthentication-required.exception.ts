import { SessionError } from './session.error.js';

/**
 * Thrown by `@RequireFreshSession(maxAgeSeconds)` when the user last authenticated longer ago
 * than that (ASVS 7.5.1). HTTP: 401 with `reauthenticate: true` in the body, so a client can
 * ask for the password again and retry.
 */
export class ReauthenticationRequiredException extends SessionError {
  static override readonly httpStatus: number = 401;
  static create(maxAgeSeconds: number): ReauthenticationRequiredException {
    return new this(
      `Re-authentication needed: this action requires having logged in or confirmed your credentials ` +
        `within the last ${maxAgeSeconds} seconds.`,
    );
  }

  /** The body Nest answers with: the usual fields and `reauthenticate: true`. */
  override getResponse(): string | object {
    const base = super.getResponse();
    return typeof base === 'object' ? { ...base, reauthenticate: true } : { message: base, reauthenticate: true };
  }
}
