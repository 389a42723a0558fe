import { Body, Controller, Get, Header, Inject, Post, Redirect, UseGuards } from '@nestjs/common';
import {
  FlashBag,
  SESSION_OPTIONS,
  SessionInterface,
  SessionManager,
  SessionNotFoundException,
  type ResolvedSessionOptions,
} from 'nest-session';
import { ADMIN_TOKEN } from '../admin-token.guard.js';
import { DemoCsrfGuard, demoCsrfToken, sameSecret } from './demo-csrf.guard.js';
import {
  ADMIN_FLASH,
  renderDemoPage,
  type DemoAdminListing,
  type DemoAdminSession,
  type DemoFlash,
} from './demo-page.renderer.js';

/** What the demo forms post (urlencoded): every field is optional and checked here. */
type DemoForm = Record<string, unknown> | undefined;

/** Most sessions the admin view lists. */
const ADMIN_LIST_LIMIT = 50;

/**
 * The demo page at `GET /` and its forms under `/demo/...`: every form posts, is checked for
 * the session's CSRF token (`DemoCsrfGuard`) and redirects back to `/` (303, post/redirect/get),
 * with a flash message saying what happened. The JSON routes stay as they are; the page's
 * lock demo calls `POST /counter/:key/increment` from the browser.
 */
@Controller()
export class DemoController {
  constructor(
    @Inject(SessionInterface) private readonly session: SessionInterface,
    @Inject(SessionManager) private readonly manager: SessionManager,
    @Inject(SESSION_OPTIONS) private readonly options: ResolvedSessionOptions,
    @Inject(ADMIN_TOKEN) private readonly adminToken: string,
  ) {}

  @Get()
  @Header('Content-Type', 'text/html; charset=utf-8')
  // The page carries the CSRF token and the session's data: no cache may keep it.
  @Header('Cache-Control', 'no-store')
  async page(): Promise<string> {
    const session = this.session;
    const resumed = session.isStarted();
    const csrfToken = await demoCsrfToken(session); // starts a new session when there was none
    const flashBag = await session.getBag<FlashBag>('flashes');
    const user = session.getUserId();
    const devices = user === undefined ? undefined : await this.manager.listUserSessions();
    const metadata = session.getMetadataBag();
    const current = devices?.find((d) => d.current);
    return renderDemoPage({
      csrfToken,
      resumed,
      user,
      data: await session.getAllData(),
      tags: session.getTags(),
      createdAt: metadata.getCreated(),
      lastActivity: session.getLastActivityTimestamp(),
      expiresAt: current?.expiresAt ?? this.anonymousExpiry(metadata.getCreated(), session.getLastActivityTimestamp()),
      devices,
      flashes: flashesOf(flashBag),
      adminEnabled: this.adminToken !== '',
    });
  }

  @Post('demo/login')
  @Redirect('/', 303)
  @UseGuards(DemoCsrfGuard)
  async login(@Body() body: DemoForm): Promise<void> {
    const user = body?.user;
    const flashes = await this.session.getBag<FlashBag>('flashes');
    if (typeof user !== 'string' || user.trim().length === 0 || user.length > 200) {
      flashes.add('error', 'Give a user name of 1 to 200 characters.');
      return;
    }
    this.session.bindToUser(user.trim());
    flashes.add('success', `Logged in as ${user.trim()}: the session got a new id and the user's tag.`);
  }

  @Post('demo/logout')
  @Redirect('/', 303)
  @UseGuards(DemoCsrfGuard)
  async logout(): Promise<void> {
    await this.session.destroy('logout');
  }

  @Post('demo/devices/revoke')
  @Redirect('/', 303)
  @UseGuards(DemoCsrfGuard)
  async revoke(@Body() body: DemoForm): Promise<void> {
    const flashes = await this.session.getBag<FlashBag>('flashes');
    const handle = body?.handle;
    try {
      if (typeof handle !== 'string' || this.session.getUserId() === undefined) throw SessionNotFoundException.create();
      await this.manager.destroyUserSession(handle);
      flashes.add('success', 'That device is logged out.');
    } catch (error) {
      if (!(error instanceof SessionNotFoundException)) throw error;
      flashes.add('error', 'No such device of yours (any more).');
    }
  }

  @Post('demo/devices/revoke-others')
  @Redirect('/', 303)
  @UseGuards(DemoCsrfGuard)
  async revokeOthers(): Promise<void> {
    const flashes = await this.session.getBag<FlashBag>('flashes');
    if (this.session.getUserId() === undefined) {
      flashes.add('error', 'Log in first.');
      return;
    }
    const n = await this.manager.destroyOtherSessions();
    flashes.add('success', `Logged out ${n} other device${n === 1 ? '' : 's'}.`);
  }

  @Post('demo/flash')
  @Redirect('/', 303)
  @UseGuards(DemoCsrfGuard)
  async flash(@Body() body: DemoForm): Promise<void> {
    const flashes = await this.session.getBag<FlashBag>('flashes');
    const type = body?.type;
    const message = body?.message;
    if (typeof message !== 'string' || message.length === 0 || message.length > 500) {
      flashes.add('error', 'Write a message of 1 to 500 characters.');
      return;
    }
    flashes.add(type === 'success' || type === 'error' ? type : 'info', message);
  }

  /** The admin view: the admin token comes as a form field (never stored); the answer is a one-time flash. */
  @Post('demo/admin')
  @Redirect('/', 303)
  @UseGuards(DemoCsrfGuard)
  async admin(@Body() body: DemoForm): Promise<void> {
    const flashes = await this.session.getBag<FlashBag>('flashes');
    const token = body?.token;
    if (this.adminToken === '') {
      flashes.add('error', 'The admin view is disabled: start the app with ADMIN_TOKEN set.');
      return;
    }
    if (typeof token !== 'string' || !sameSecret(token, this.adminToken)) {
      flashes.add('error', 'Wrong admin token.');
      return;
    }
    flashes.add(
      ADMIN_FLASH,
      body?.action === 'gc' ? { removed: await this.manager.collectGarbage() } : await this.list(body?.user),
    );
  }

  private async list(user: unknown): Promise<DemoAdminListing> {
    const userId = typeof user === 'string' && user !== '' ? user : undefined;
    const sessions: DemoAdminSession[] = [];
    for await (const info of this.manager.listSessions({ userId, pageSize: ADMIN_LIST_LIMIT + 1 })) {
      if (sessions.length === ADMIN_LIST_LIMIT) return { user: userId ?? null, sessions, truncated: true };
      const { handle, userId: owner, tags, createdAt, lastActivity, expiresAt } = info;
      sessions.push({ handle, user: owner ?? null, tags: [...tags], createdAt, lastActivity, expiresAt });
    }
    return { user: userId ?? null, sessions, truncated: false };
  }

  /** A session bound to no user expires by inactivity, or at the absolute lifetime counted from its creation. */
  private anonymousExpiry(createdAt: number, lastActivity: number): number {
    const inactive = lastActivity + this.options.inactivityTimeout * 1000;
    const absolute = this.options.absoluteTimeout;
    return absolute > 0 ? Math.min(inactive, createdAt + absolute * 1000) : inactive;
  }
}

/** Reads (and so consumes) every flash message, admin answers included (the renderer shows those in the admin box). */
function flashesOf(bag: FlashBag): DemoFlash[] {
  return Object.entries(bag.all()).flatMap(([type, messages]) => messages.map((message) => ({ type, message })));
}
