import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { freePort } from '../../src/embedded/server.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { waitFor } from './databases.js';

/** A real PgBouncer on loopback (transaction pooling, trust auth), started from the distribution's package. */
export interface TestPgBouncer {
  port: number;
  /** Its ini file, which the cutover rewrites. */
  configFile: string;
  /** Admin console URL (user pgbouncer). */
  adminUrl: string;
  /** A client URL through PgBouncer for `user` to database entry `database`. */
  url(user: string, database: string): string;
  log(): string;
  stop(): Promise<void>;
}

/** The pgbouncer binary; throws a message telling how to install it when missing (tests never skip). */
export function pgbouncerBinary(): string {
  for (const dir of [...(process.env['PATH'] ?? '').split(':'), '/usr/sbin', '/usr/bin', '/usr/local/bin', '/usr/local/sbin']) {
    if (dir && existsSync(join(dir, 'pgbouncer'))) return join(dir, 'pgbouncer');
  }
  throw new Error('pgbouncer is not installed: install it with `apt-get install -y pgbouncer` (.ci/run does this when it is missing)');
}

/**
 * Starts PgBouncer with one database entry per `databases` key (value: `host=... port=... dbname=...`),
 * users allowed without password. As root it runs as the `postgres` system user (it refuses root).
 */
export async function startPgBouncer(databases: Record<string, string>, users: string[]): Promise<TestPgBouncer> {
  const binary = pgbouncerBinary();
  const dir = mkdtempSync(join(tmpdir(), 'pgferry-pgbouncer-'));
  const port = await freePort();
  const configFile = join(dir, 'pgbouncer.ini');
  writeFileSync(join(dir, 'userlist.txt'), [...users, 'pgbouncer'].map((u) => `"${u}" ""\n`).join(''));
  writeFileSync(
    configFile,
    [
      '[databases]',
      ...Object.entries(databases).map(([name, conn]) => `${name} = ${conn}`),
      '',
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${join(dir, 'userlist.txt')}`,
      'admin_users = pgbouncer',
      'pool_mode = transaction',
      'ignore_startup_parameters = extra_float_digits,options',
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      `pidfile = ${join(dir, 'pgbouncer.pid')}`,
      'server_login_retry = 1',
      '',
    ].join('\n'),
  );
  let user: { uid: number; gid: number } | undefined;
  if (process.getuid?.() === 0) {
    const id = (flag: string): number => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
    user = { uid: id('-u'), gid: id('-g') };
    for (const f of ['', 'pgbouncer.ini', 'userlist.txt']) chownSync(join(dir, f), user.uid, user.gid);
  }
  const child: ChildProcess = spawn(binary, [configFile], { stdio: ['ignore', 'pipe', 'pipe'], ...(user ?? {}) });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const adminUrl = `postgresql://pgbouncer@127.0.0.1:${port}/pgbouncer`;
  const log = (): string => `${output}${existsSync(join(dir, 'pgbouncer.log')) ? readFileSync(join(dir, 'pgbouncer.log'), 'utf8') : ''}`;
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`pgbouncer exited with ${child.exitCode}: ${log().trim().split('\n').slice(-3).join(' ')}`);
      const c = new pg.Client({ connectionString: adminUrl });
      c.on('error', () => {});
      try {
        await c.connect();
        await c.query('SHOW VERSION');
        return true;
      } finally {
        await c.end().catch(() => {});
      }
    },
    'pgbouncer to accept connections',
    15_000,
  );
  return {
    port,
    configFile,
    adminUrl,
    url: (u, database) => `postgresql://${u}@127.0.0.1:${port}/${database}`,
    log,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
