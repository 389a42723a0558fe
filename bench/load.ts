import autocannon from 'autocannon';
import { sessionCookieFrom } from './http.js';

export interface LoadOptions {
  readonly port: number;
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly connections: number;
  /** Seconds. */
  readonly duration: number;
  /** One cookie per connection (`name=value`), or none. */
  readonly cookies?: readonly string[];
  /** Follow Set-Cookie: each connection sends the cookie its last response set. */
  readonly chain?: boolean;
  /** Reads the app process's CPU time (µs); with it the result has CPU time per request. */
  readonly cpu?: () => Promise<number>;
}

export interface LoadResult {
  /** Successful (2xx) responses per second. */
  readonly rps: number;
  /** Latency percentiles, ms. */
  readonly p50: number;
  readonly p99: number;
  readonly ok: number;
  readonly non2xx: number;
  /** All responses (2xx and others). */
  readonly responses: number;
  readonly errors: number;
  readonly statusCodes: Record<string, number>;
  /**
   * CPU time (user + system) the app process spent per response, µs. Unlike req/s it barely
   * moves when other processes compete for the cores, so it is the steadier comparison on a
   * shared machine.
   */
  readonly cpuPerRequest: number | undefined;
}

/** What http-parser-js hands to a client's `headers` event (autocannon's typings say otherwise). */
interface ParserHeaders {
  headers?: string[];
}

/** Loads one route with autocannon (in this process, which is not the app's). */
export async function load(options: LoadOptions): Promise<LoadResult> {
  const cookies = options.cookies ?? [];
  let nextCookie = 0;
  const cpuBefore = await options.cpu?.();
  const result = await autocannon({
    url: `http://127.0.0.1:${options.port}${options.path}`,
    method: options.method,
    connections: options.connections,
    pipelining: 1,
    duration: options.duration,
    timeout: 10,
    setupClient: (client) => {
      if (cookies.length === 0) return;
      let cookie = cookies[nextCookie++ % cookies.length];
      client.setHeaders({ cookie });
      if (!options.chain) return;
      (client as unknown as NodeJS.EventEmitter).on('headers', (info: ParserHeaders) => {
        const raw = info.headers ?? [];
        const setCookies: string[] = [];
        for (let i = 0; i + 1 < raw.length; i += 2) {
          if (raw[i]!.toLowerCase() === 'set-cookie') setCookies.push(raw[i + 1]!);
        }
        const renewed = sessionCookieFrom(setCookies);
        if (renewed !== undefined && renewed !== cookie) {
          cookie = renewed;
          client.setHeaders({ cookie });
        }
      });
    },
  });
  const cpuAfter = await options.cpu?.();
  const responses = result['2xx'] + result.non2xx;
  const statusCodes: Record<string, number> = {};
  for (const [code, stat] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = stat.count ?? 0;
  const ok = result['2xx'];
  return {
    rps: ok / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    ok,
    non2xx: result.non2xx,
    responses,
    errors: result.errors,
    statusCodes,
    cpuPerRequest:
      cpuBefore !== undefined && cpuAfter !== undefined && responses > 0 ? (cpuAfter - cpuBefore) / responses : undefined,
  };
}
