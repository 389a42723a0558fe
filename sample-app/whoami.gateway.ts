import { Inject } from '@nestjs/common';
import { MessageBody, SubscribeMessage, WebSocketGateway, WsException } from '@nestjs/websockets';
import { CurrentSession, SessionInterface, SessionLock } from 'nest-session';

/** What `whoami` acknowledges: the same fields as `GET /session` without the tags. */
export interface WhoamiAnswer {
  readonly started: boolean;
  readonly data: Record<string, unknown>;
  readonly user: string | null;
}

/**
 * socket.io at `/socket.io` on the app's own HTTP server (wrapped in `SessionWebSocketAdapter`
 * by app.factory.ts): every message sees the session named by the handshake's cookie, and a
 * socket whose session ends is disconnected.
 */
@WebSocketGateway()
export class WhoamiGateway {
  // A singleton gateway: the injected session follows the message being handled.
  constructor(@Inject(SessionInterface) private readonly session: SessionInterface) {}

  /** Acknowledges `{started, data, user}` of the connection's session. */
  @SubscribeMessage('whoami')
  async whoami(): Promise<WhoamiAnswer> {
    const s = this.session;
    if (!s.isStarted()) return { started: false, data: {}, user: null };
    return {
      started: true,
      data: JSON.parse(JSON.stringify(await s.getAllData())) as Record<string, unknown>,
      user: s.getUserId() ?? null,
    };
  }

  /** `{key, value}`: `putData` in the connection's session (committed before the acknowledgement). */
  @SubscribeMessage('put')
  async put(@MessageBody() body: unknown, @CurrentSession() session: SessionInterface): Promise<{ key: string; value: unknown }> {
    if (typeof body !== 'object' || body === null || typeof (body as { key?: unknown }).key !== 'string' || !('value' in body)) {
      throw new WsException('Send {"key": "<name>", "value": ...}.');
    }
    const { key, value } = body as { key: string; value: unknown };
    session.start();
    await session.putData(key, value);
    return { key, value };
  }

  /** +1 on a number under the session lock, like `POST /counter/:key/increment-locked`. */
  @SubscribeMessage('increment')
  @SessionLock()
  async increment(@MessageBody() key: unknown): Promise<{ key: string; value: number }> {
    if (typeof key !== 'string') throw new WsException('Send the key as the message.');
    const current = await this.session.getData(key);
    if (current !== undefined && typeof current !== 'number') throw new WsException(`"${key}" does not hold a number.`);
    const value = (current ?? 0) + 1;
    await this.session.putData(key, value);
    return { key, value };
  }
}
