import { Injectable } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { SessionManager } from '../manager/session.manager.js';
import { SESSION_OPTIONS } from '../session/session.constants.js';
import type { ResolvedSessionOptions } from '../session/session-module.options.js';
import type { CliStream } from './cli-output.js';

/**
 * What every `sessions` command uses: the app's `SessionManager` (found anywhere in the app's
 * module graph, so `SessionModule` need not be global) and the output stream.
 */
@Injectable()
export class SessionCliContext {
  /** Standard output; a test or a wrapper may swap it. */
  out: CliStream = process.stdout;

  constructor(private readonly moduleRef: ModuleRef) {}

  /** @throws Error when the app module does not import `SessionModule`. */
  manager(): SessionManager {
    try {
      return this.moduleRef.get(SessionManager, { strict: false });
    } catch {
      throw new Error('The sessions commands need SessionModule in the app module they run on (SessionModule.forRoot(...)).');
    }
  }

  /** The app's resolved SessionModule options. */
  options(): ResolvedSessionOptions {
    this.manager(); // the same check and message when SessionModule is missing
    return this.moduleRef.get<symbol, ResolvedSessionOptions>(SESSION_OPTIONS, { strict: false });
  }

  print(line: string): void {
    this.out.write(line + '\n');
  }
}
