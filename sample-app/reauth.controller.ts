import { Controller, HttpCode, Inject, Post } from '@nestjs/common';
import { SessionInterface, SessionNotAuthenticatedException } from 'nest-session';

/** `POST /auth/reauth`: stands for re-entering the password before a sensitive action. */
@Controller('auth')
export class ReauthController {
  constructor(@Inject(SessionInterface) private readonly session: SessionInterface) {}

  /** Marks the session freshly authenticated (a real app checks the password first); 401 when not logged in. */
  @Post('reauth')
  @HttpCode(200)
  reauth(): { authenticatedAt: string } {
    if (!this.session.isStarted() || this.session.isAnonymous()) throw SessionNotAuthenticatedException.create('re-authenticate');
    this.session.markAuthenticated();
    return { authenticatedAt: new Date(this.session.getAuthenticatedAt()!).toISOString() };
  }
}
