import {
  BadRequestException,
  Controller,
  Delete,
  Get,
  HttpCode,
  Inject,
  NotFoundException,
  Param,
  Post,
  Query,
  UseGuards,
} from '@nestjs/common';
import { SessionManager, type SessionInfo } from 'nest-session';
import { AdminTokenGuard } from './admin-token.guard.js';

/** One session as the admin listing shows it. */
export interface AdminSessionView {
  /** The session's handle: a non-secret digest of its id, for `DELETE /admin/sessions/:handle`. */
  readonly handle: string;
  readonly createdAt: string;
  readonly lastActivity: string;
  readonly expiresAt: string;
  readonly tags: readonly string[];
  readonly user: string | null;
  readonly permanent: boolean;
}

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

/**
 * Admin routes over `SessionManager` (`/admin/sessions?tag=`, `/admin/sessions/:handle`, `/admin/gc`),
 * guarded by `x-admin-token`.
 *
 * The listing shows metadata and each session's handle, never the session id: an id is the cookie
 * value, so whoever reads it can take over the session (and the store does not even keep it, only
 * a digest). An admin acts on sessions by tag (every user-bound session carries `userTag(user)`)
 * or on one session by its handle ("revoke this device"); a handle is no cookie.
 */
@Controller('admin')
@UseGuards(AdminTokenGuard)
export class AdminController {
  constructor(@Inject(SessionManager) private readonly manager: SessionManager) {}

  /**
   * `?tag=T` filters by tag, `?user=U` by user (not both); `?limit=N` (default 100, at most 1000)
   * caps the answer, `truncated` says whether more exist.
   */
  @Get('sessions')
  async list(
    @Query('tag') tag?: string,
    @Query('limit') limit?: string,
    @Query('user') user?: string,
  ): Promise<{ sessions: AdminSessionView[]; truncated: boolean }> {
    const max = parseLimit(limit);
    const sessions: AdminSessionView[] = [];
    const filter = { tag: tag === '' ? undefined : tag, userId: user === '' ? undefined : user };
    for await (const info of this.manager.listSessions({ ...filter, pageSize: Math.min(max + 1, 100) })) {
      if (sessions.length === max) return { sessions, truncated: true };
      sessions.push(view(info));
    }
    return { sessions, truncated: false };
  }

  /** Destroys every session with `?tag=T`, or of `?user=U` (ASVS 7.4.5); one is required: there is no "destroy all" route. */
  @Delete('sessions')
  async destroy(@Query('tag') tag?: string, @Query('user') user?: string): Promise<{ destroyed: number }> {
    if (user !== undefined && user !== '') {
      if (tag !== undefined && tag !== '') throw new BadRequestException('Give a tag or a user, not both.');
      return { destroyed: await this.manager.destroySessionsForUser(user, 'admin') };
    }
    if (tag === undefined || tag === '')
      throw new BadRequestException('Give the tag or user of the sessions to destroy: DELETE /admin/sessions?tag=T or ?user=U.');
    return { destroyed: await this.manager.destroySessionsByTag(tag, 'admin') };
  }

  /** Destroys the one session with this handle (from the listing): 404 when there is none (any more). */
  @Delete('sessions/:handle')
  async destroyOne(@Param('handle') handle: string): Promise<{ destroyed: number }> {
    if (!(await this.manager.destroySessionByHandle(handle, 'admin'))) throw new NotFoundException('No such session.');
    return { destroyed: 1 };
  }

  /** Runs garbage collection now (skipped, answering 0, while another run holds the GC lock). */
  @Post('gc')
  @HttpCode(200)
  async gc(): Promise<{ removed: number }> {
    return { removed: await this.manager.collectGarbage() };
  }
}

function parseLimit(limit: string | undefined): number {
  if (limit === undefined) return DEFAULT_LIMIT;
  const n = Number(limit);
  if (!Number.isInteger(n) || n < 1 || n > MAX_LIMIT)
    throw new BadRequestException(`limit must be a whole number from 1 to ${MAX_LIMIT}.`);
  return n;
}

function view(info: SessionInfo): AdminSessionView {
  return {
    handle: info.handle,
    createdAt: new Date(info.createdAt).toISOString(),
    lastActivity: new Date(info.lastActivity).toISOString(),
    expiresAt: new Date(info.expiresAt).toISOString(),
    tags: info.tags,
    user: info.userId ?? null,
    permanent: info.permanent,
  };
}
