import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import type { Response } from 'supertest';

/** Parsed Set-Cookie headers of a response, by cookie name. */
export interface ParsedCookie {
  readonly value: string;
  readonly attributes: Record<string, string | true>;
  readonly raw: string;
}

export function setCookies(res: Response): Map<string, ParsedCookie> {
  const header = res.headers['set-cookie'] as unknown as string[] | string | undefined;
  const list = header === undefined ? [] : Array.isArray(header) ? header : [header];
  const cookies = new Map<string, ParsedCookie>();
  for (const raw of list) {
    const [pair = '', ...attrs] = raw.split(';').map((p) => p.trim());
    const eq = pair.indexOf('=');
    const attributes: Record<string, string | true> = {};
    for (const attr of attrs) {
      const i = attr.indexOf('=');
      if (i === -1) attributes[attr.toLowerCase()] = true;
      else attributes[attr.slice(0, i).toLowerCase()] = attr.slice(i + 1);
    }
    cookies.set(pair.slice(0, eq), { value: pair.slice(eq + 1), attributes, raw });
  }
  return cookies;
}

/**
 * A cookie-keeping client over real HTTP (supertest against the app's server), like one
 * browser: it stores the session cookie it is given and sends it back.
 */
export class Browser {
  cookie: string | undefined;
  constructor(
    private readonly app: INestApplication,
    readonly cookieName = 'sid',
  ) {}

  private keep(res: Response): Response {
    const c = setCookies(res).get(this.cookieName);
    if (c !== undefined) this.cookie = c.attributes['max-age'] === '0' ? undefined : c.value;
    return res;
  }

  private with(req: request.Test): request.Test {
    return this.cookie === undefined ? req : req.set('Cookie', `${this.cookieName}=${this.cookie}`);
  }

  async get(path: string): Promise<Response> {
    return this.keep(await this.with(request(this.app.getHttpServer()).get(path)));
  }
  async put(path: string, body: unknown): Promise<Response> {
    return this.keep(await this.with(request(this.app.getHttpServer()).put(path)).send(body as object));
  }
  async post(path: string, body?: unknown): Promise<Response> {
    const req = this.with(request(this.app.getHttpServer()).post(path));
    return this.keep(await (body === undefined ? req : req.send(body as object)));
  }
  async delete(path: string): Promise<Response> {
    return this.keep(await this.with(request(this.app.getHttpServer()).delete(path)));
  }
}
