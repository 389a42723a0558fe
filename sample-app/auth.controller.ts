import { BadRequestException, Body, Controller, HttpCode, Inject, Post } from '@nestjs/common';
import { SessionInterface } from 'nest-session';

@Controller('auth')
export class AuthController {
  constructor(@Inject(SessionInterface) private readonly session: SessionInterface) {}

  /** Binds the session to the user, which tags it by user and renews its id (fixation defence). */
  @Post('login')
  @HttpCode(200)
  login(@Body() body: { user?: unknown } | undefined): { user: string } {
    const user = body?.user;
    if (typeof user !== 'string' || user.length === 0 || user.length > 200) {
      throw new BadRequestException('Send {"user": "<name>"} with 1-200 characters.');
    }
    this.session.bindToUser(user);
    return { user };
  }

  @Post('logout')
  @HttpCode(200)
  async logout(): Promise<{ loggedOut: boolean }> {
    if (!this.session.isStarted()) return { loggedOut: false };
    await this.session.destroy('logout');
    return { loggedOut: true };
  }
}
