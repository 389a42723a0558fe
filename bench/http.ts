import { COOKIE_NAME } from './variants.js';

/** The `name=value` pair of our session cookie among a response's Set-Cookie headers. */
export function sessionCookieFrom(setCookies: readonly string[]): string | undefined {
  for (const header of setCookies) {
    const pair = header.split(';', 1)[0]!.trim();
    if (pair.startsWith(`${COOKIE_NAME}=`) && pair.length > COOKIE_NAME.length + 1) return pair;
  }
  return undefined;
}

export interface SimpleResponse {
  readonly status: number;
  readonly cookie: string | undefined;
  readonly body: unknown;
}

/** One request with fetch (prepare and sanity checks only; load comes from autocannon). */
export async function request(port: number, method: 'GET' | 'POST', path: string, cookie?: string): Promise<SimpleResponse> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: cookie === undefined ? {} : { cookie },
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* keep the text */
  }
  return { status: response.status, cookie: sessionCookieFrom(response.headers.getSetCookie()), body };
}

/** `count` new sessions, each holding key `n` (one POST /write without a cookie each, 8 at a time). */
export async function createSessions(port: number, count: number): Promise<string[]> {
  const cookies = new Array<string>(count);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < count; i = next++) {
      const response = await request(port, 'POST', '/write');
      if (response.status !== 200 || response.cookie === undefined) {
        throw new Error(`POST /write answered ${response.status} ${JSON.stringify(response.body)} without a session cookie`);
      }
      cookies[i] = response.cookie;
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, count) }, worker));
  return cookies;
}
