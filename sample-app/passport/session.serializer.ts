import { Injectable } from '@nestjs/common';
import { PassportSerializer } from '@nestjs/passport';
import type { SampleUser } from './local.strategy.js';

type Done<T> = (error: Error | null, value?: T | false) => void;

/**
 * What passport keeps in the session: the username only (also the id the session is bound
 * to); the user object is rebuilt from it on every request (`req.user`).
 */
@Injectable()
export class SessionSerializer extends PassportSerializer {
  serializeUser(user: SampleUser, done: Done<string>): void {
    done(null, user.username);
  }

  deserializeUser(username: unknown, done: Done<SampleUser & { readonly via: 'deserializeUser' }>): void {
    if (typeof username !== 'string') done(null, false);
    else done(null, { username, via: 'deserializeUser' });
  }
}
