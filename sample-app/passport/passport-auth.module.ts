import { Module } from '@nestjs/common';
import { PassportModule } from '@nestjs/passport';
import passport from 'passport';
import { PassportSessionModule } from 'nest-session';
import { LocalStrategy } from './local.strategy.js';
import { SessionSerializer } from './session.serializer.js';
import { PassportAuthController } from './passport-auth.controller.js';

/** @nestjs/passport with `session: true` on this library's sessions, on Express and Fastify. */
@Module({
  imports: [PassportModule.register({ session: true }), PassportSessionModule.forRoot({ passport })],
  providers: [LocalStrategy, SessionSerializer],
  controllers: [PassportAuthController],
})
export class PassportAuthModule {}
