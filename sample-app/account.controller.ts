import { Controller, Delete, Get, HttpCode, Inject, Param, Post } from '@nestjs/common';
import { RequireFreshSession, SessionManager, type UserSessionInfo } from 'nest-session';
import { freshAgeFromEnv } from './fresh-age.config.js';

/** One of the current user's sessions as `GET /account/sessions` shows it. */
export interface AccountSessionView {
  /** Non-secret name of the session, for `DELETE /account/sessions/:handle`; never the id. */
  readonly handle: string;
  /** True for the session that asked. */
  readonly current: boolean;
  readonly createdAt: string;
  readonly lastActivity: string;
  readonly expiresAt: string;
  readonly userAgent: string | null;
  /** The address as the stored IP-lock prefix. */
  readonly ip: string | null;
}

/**
 * "My devices" (ASVS 7.5.2, 7.4.3): the current user's sessions, ending one of them or all
 * others, and a sensitive route behind `@RequireFreshSession()` (7.5.1). Each route answers 401
 * when the request is not logged in (`SessionNotAuthenticatedException`).
 */
@Controller('account')
export class AccountController {
  constructor(@Inject(SessionManager) private readonly manager: SessionManager) {}

  @Get('sessions')
  async sessions(): Promise<AccountSessionView[]> {
    return (await this.manager.listUserSessions()).map(view);
  }

  /** Ends one of the user's own sessions; 404 for any other handle (nothing happens to it). */
  @Delete('sessions/:handle')
  async destroy(@Param('handle') handle: string): Promise<{ destroyed: number }> {
    await this.manager.destroyUserSession(handle);
    return { destroyed: 1 };
  }

  /** "Log out other devices", e.g. after a password change. */
  @Post('sessions/revoke-others')
  @HttpCode(200)
  async revokeOthers(): Promise<{ destroyed: number }> {
    return { destroyed: await this.manager.destroyOtherSessions() };
  }

  /** 200 only within `SESSION_FRESH_AGE` seconds (default 300) of login or `POST /auth/reauth`, else 401 `{reauthenticate: true}`. */
  @Get('sensitive')
  @RequireFreshSession(freshAgeFromEnv(process.env))
  sensitive(): { ok: true } {
    return { ok: true };
  }
}

function view(info: UserSessionInfo): AccountSessionView {
  return {
    handle: info.handle,
    current: info.current,
    createdAt: new Date(info.createdAt).toISOString(),
    lastActivity: new Date(info.lastActivity).toISOString(),
    expiresAt: new Date(info.expiresAt).toISOString(),
    userAgent: info.userAgent ?? null,
    ip: info.clientAddress ?? null,
  };
}
