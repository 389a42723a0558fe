import { Controller, Get, HttpCode, Post, Req, UnauthorizedException, UseGuards } from '@nestjs/common';
import { LocalAuthGuard } from './local-auth.guard.js';

/** What passport adds to the request (Express and Fastify alike). */
interface PassportRequest {
  user?: unknown;
  isAuthenticated(): boolean;
  logOut(callback: (error?: Error | null) => void): void;
}

/** Login through @nestjs/passport + passport-local with sessions (README "Using passport"). */
@Controller('auth')
export class PassportAuthController {
  /** Body `{username, password}`; any username, password `secret`. Renews the session id. */
  @Post('passport/login')
  @HttpCode(200)
  @UseGuards(LocalAuthGuard)
  login(@Req() req: PassportRequest): { user: unknown } {
    return { user: req.user };
  }

  /** The logged-in user as `deserializeUser` rebuilt it; 401 without. */
  @Get('me')
  me(@Req() req: PassportRequest): { user: unknown } {
    if (!req.isAuthenticated()) throw new UnauthorizedException('Not logged in.');
    return { user: req.user };
  }

  /** `req.logOut()`: ends the session. */
  @Post('passport/logout')
  @HttpCode(200)
  async logout(@Req() req: PassportRequest): Promise<{ loggedOut: boolean }> {
    const was = req.isAuthenticated();
    await new Promise<void>((resolve, reject) => req.logOut((error) => (error ? reject(error) : resolve())));
    return { loggedOut: was };
  }
}
