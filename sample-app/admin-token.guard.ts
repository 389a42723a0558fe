import { createHash, timingSafeEqual } from 'node:crypto';
import { ForbiddenException, Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';

/** Token of the admin token string (`SampleAppConfig.adminToken`, else env `ADMIN_TOKEN`). */
export const ADMIN_TOKEN = Symbol('ADMIN_TOKEN');

/**
 * Lets a request through only if its `x-admin-token` header equals the configured admin token.
 * No token configured (`ADMIN_TOKEN` unset or empty) means admin routes always answer 403.
 */
@Injectable()
export class AdminTokenGuard implements CanActivate {
  constructor(@Inject(ADMIN_TOKEN) private readonly token: string) {}

  canActivate(context: ExecutionContext): boolean {
    if (this.token === '') throw new ForbiddenException('Admin routes are disabled: start the app with ADMIN_TOKEN set.');
    const request = context.switchToHttp().getRequest<{ headers: Record<string, string | string[] | undefined> }>();
    const given = request.headers['x-admin-token'];
    if (typeof given !== 'string' || !sameSecret(given, this.token)) {
      throw new ForbiddenException('Send the admin token in the x-admin-token header.');
    }
    return true;
  }
}

/** Constant-time comparison (hashing first gives both sides the same length). */
function sameSecret(a: string, b: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
}
