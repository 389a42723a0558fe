import { Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { Strategy } from 'passport-local';

/** The user passport-local verifies and `serializeUser` receives. */
export interface SampleUser {
  readonly username: string;
}

/** The demo's password check: any username, password `secret` (stands for a real user store). */
@Injectable()
export class LocalStrategy extends PassportStrategy(Strategy) {
  validate(username: string, password: string): SampleUser | false {
    return password === 'secret' && username.length > 0 && username.length <= 200 ? { username } : false;
  }
}
