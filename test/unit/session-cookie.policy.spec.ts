import { describe, expect, it } from '@jest/globals';
import { cookieAfterCommit, cookieBeforeCommit } from '../../lib/http/session-cookie.policy.js';
import type { SessionCookieFacts } from '../../lib/session/session-cookie-facts.js';

const facts = (overrides: Partial<SessionCookieFacts> = {}): SessionCookieFacts => ({
  id: 'id-1',
  idIssued: false,
  idIssuePending: false,
  destroyed: false,
  metadataWritten: false,
  permanent: false,
  cookieLifetime: undefined,
  ...overrides,
});

describe('session cookie policy', () => {
  it('sends nothing when the client already holds the id', () => {
    expect(cookieAfterCommit(facts())).toEqual({ kind: 'none' });
    expect(cookieAfterCommit(facts({ metadataWritten: true }))).toEqual({ kind: 'none' });
  });

  it('sets the cookie when an id new to the client was stored, with the session cookie lifetime as Max-Age', () => {
    expect(cookieAfterCommit(facts({ idIssued: true }))).toEqual({ kind: 'set', id: 'id-1', maxAge: undefined });
    expect(cookieAfterCommit(facts({ idIssued: true, cookieLifetime: 600 }))).toEqual({ kind: 'set', id: 'id-1', maxAge: 600 });
  });

  it('slides a permanent session cookie on every metadata write', () => {
    expect(cookieAfterCommit(facts({ permanent: true, metadataWritten: true, cookieLifetime: 3600 }))).toEqual({
      kind: 'set',
      id: 'id-1',
      maxAge: 3600,
    });
    expect(cookieAfterCommit(facts({ permanent: true, cookieLifetime: 3600 }))).toEqual({ kind: 'none' });
  });

  it('expires the cookie of a destroyed session', () => {
    expect(cookieAfterCommit(facts({ destroyed: true, id: undefined }))).toEqual({ kind: 'clear' });
    expect(cookieBeforeCommit(facts({ destroyed: true, idIssuePending: true }))).toEqual({ kind: 'clear' });
  });

  it('before the commit, announces the id the commit will store', () => {
    expect(cookieBeforeCommit(facts({ idIssuePending: true, cookieLifetime: 60 }))).toEqual({
      kind: 'set',
      id: 'id-1',
      maxAge: 60,
    });
    expect(cookieBeforeCommit(facts())).toEqual({ kind: 'none' });
    expect(cookieBeforeCommit(facts({ idIssued: true }))).toEqual({ kind: 'set', id: 'id-1', maxAge: undefined });
  });
});
