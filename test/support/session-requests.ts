import { expect } from '@jest/globals';
import { Session } from '../../lib/session/session.js';
import type { SessionStore } from '../../lib/session/session.store.js';

/** A request of the client holding `ids` (cookie order), resumed: it must find its session. */
export async function resumed(store: SessionStore, ...ids: string[]): Promise<Session> {
  const session = new Session(store, { cookieIds: ids, cookieName: 'sid' });
  await session.resume();
  expect(session.isStarted()).toBe(true);
  return session;
}

/** A new client's request that stores `data` in a new session; answers the session's id (its cookie). */
export async function created(store: SessionStore, data: Record<string, unknown>): Promise<string> {
  const session = new Session(store, { cookieIds: [], cookieName: 'sid' });
  session.start();
  for (const [k, v] of Object.entries(data)) await session.putData(k, v);
  await session.commit();
  return session.getId();
}
