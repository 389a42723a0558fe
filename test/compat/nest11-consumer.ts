// A strict TypeScript consumer of the packed library on Nest 11 (ESM), compiled with skipLibCheck: false by test/compat/nest11.sh.
import 'reflect-metadata';
import { Inject, Injectable, Module } from '@nestjs/common';
import { MemoryBackend, MemoryLocker, SessionInterface, SessionManager, SessionModule } from 'nest-session';

@Injectable()
export class Visits {
  constructor(
    @Inject(SessionInterface) private readonly session: SessionInterface,
    private readonly manager: SessionManager,
  ) {}
  async count(): Promise<number> {
    const visits = (((await this.session.getData('visits')) as number | undefined) ?? 0) + 1;
    await this.session.putData('visits', visits);
    return visits;
  }
  endAllOf(user: string): Promise<number> {
    return this.manager.destroySessionsForUser(user, 'logged out everywhere');
  }
}

@Module({
  imports: [
    SessionModule.forRoot({
      metadataBackend: new MemoryBackend(),
      storageBackend: new MemoryBackend(),
      locker: new MemoryLocker(),
    }),
  ],
  providers: [Visits],
})
export class AppModule {}
