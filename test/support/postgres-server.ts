import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './redis-server.js';

const run = promisify(execFile);

/** The directory of initdb and pg_ctl: `PG_BIN`, else the newest /usr/lib/postgresql/<version>/bin. */
function binDir(): string {
  if (process.env.PG_BIN !== undefined) return process.env.PG_BIN;
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
        .sort((x, y) => Number(y) - Number(x))
    : [];
  if (versions.length === 0) {
    throw new Error(
      'The PostgreSQL outage tests need initdb and pg_ctl (/usr/lib/postgresql/<version>/bin, or set PG_BIN): ' +
        'apt-get install postgresql',
    );
  }
  return join(root, versions[0]!, 'bin');
}

/**
 * A private PostgreSQL cluster for outage tests: `initdb` into a temporary directory, `pg_ctl`
 * on a spare port (unix socket in the same directory). initdb refuses to run as root, so as
 * root everything runs as the `postgres` user (`runuser`). `stop('immediate')` is a crash (no
 * checkpoint, recovery at the next start); committed transactions survive it, as in production.
 */
export class PostgresServer {
  private constructor(
    private readonly dir: string,
    readonly port: number,
    private readonly bin: string,
  ) {}

  /** `postgres://postgres@127.0.0.1:<port>/postgres`. */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  static async start(): Promise<PostgresServer> {
    const bin = binDir();
    const dir = await mkdtemp(join(tmpdir(), 'nest-session-pg-'));
    if (userInfo().uid === 0) await run('chown', ['postgres:postgres', dir]).catch(() => chown(dir, 0, 0));
    const server = new PostgresServer(dir, await freePort(), bin);
    await server.pg('initdb', ['-D', join(dir, 'data'), '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8']);
    await server.launch();
    return server;
  }

  /** Starts (again) on the same port and waits until it accepts connections. */
  async launch(): Promise<void> {
    await this.pg('pg_ctl', [
      '-D',
      join(this.dir, 'data'),
      '-o',
      `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=on`,
      '-l',
      join(this.dir, 'log'),
      '-w',
      '-t',
      '30',
      'start',
    ]);
  }

  /** `pg_ctl stop -m <mode>`: `immediate` kills every backend at once (a crash). */
  async stop(mode: 'immediate' | 'fast' = 'fast'): Promise<void> {
    await this.pg('pg_ctl', ['-D', join(this.dir, 'data'), '-m', mode, '-w', 'stop']).catch(() => undefined);
  }

  /** Stops the cluster and removes its directory. */
  async destroy(): Promise<void> {
    await this.stop('immediate');
    await rm(this.dir, { recursive: true, force: true });
  }

  private async pg(tool: string, args: string[]): Promise<void> {
    const path = join(this.bin, tool);
    try {
      if (userInfo().uid === 0) await run('runuser', ['-u', 'postgres', '--', path, ...args], { cwd: this.dir });
      else await run(path, args, { cwd: this.dir });
    } catch (error) {
      const { stderr = '', stdout = '' } = error as { stderr?: string; stdout?: string };
      throw new Error(`${tool} ${args.join(' ')} failed: ${(error as Error).message}\n${stdout}${stderr}`);
    }
  }
}
