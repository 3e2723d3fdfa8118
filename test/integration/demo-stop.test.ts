import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../support/databases.js';
import { exited } from '../support/pgferry.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

/** The embedded servers' directories under `parent` (the temp dir by default). */
function embeddedDirs(parent = tmpdir()): string[] {
  return readdirSync(parent)
    .filter((d) => d.startsWith('pgferry-pg'))
    .map((d) => join(parent, d));
}

/** The postmaster's pid in a server directory, or null before it has started (postmaster.pid line 1). */
function postmasterPid(dir: string): number | null {
  try {
    return Number(readFileSync(join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return null;
  }
}

/** The process runs (a zombie does not: one reparented to PID 1 may wait long to be reaped). */
function alive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0] !== 'Z';
  } catch {
    return false;
  }
}

/** The embedded servers' directories (under the temp dir) serving `port`, from their postmaster.pid (line 4: the port). */
function serverDirs(port: number): string[] {
  return embeddedDirs()
    .filter((d) => {
      try {
        return readFileSync(join(d, 'data', 'postmaster.pid'), 'utf8').split('\n')[3] === String(port);
      } catch {
        return false;
      }
    });
}

describe('the demo', () => {
  it('a second Ctrl-C exits at once and takes its PostgreSQL servers with it', async () => {
    const demo = spawn(process.execPath, [CLI, 'demo', '--http-port', '0'], { env: { PATH: process.env['PATH'] ?? '', PGFERRY_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let dirs: string[] = [];
    demo.stdout.on('data', (d: Buffer) => (out += d.toString()));
    demo.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      // The first status line comes after the signal handlers are in place.
      await waitFor(() => out.includes('[demo] phase='), 'the demo migrating', 120_000).catch((err: Error) => {
        throw new Error(`${err.message}\n${out}`);
      });
      const ports = [...out.matchAll(/postgresql:\/\/postgres@127\.0\.0\.1:(\d+)\/shop/g)].map((m) => Number(m[1]));
      expect(ports).toHaveLength(2);
      dirs = ports.flatMap(serverDirs);
      expect(dirs).toHaveLength(2);

      demo.kill('SIGINT');
      await waitFor(() => out.includes('pgferry: stopping'), 'the first Ctrl-C seen');
      demo.kill('SIGINT');
      expect(await exited(demo), out).toBe(130);

      for (const dir of dirs) expect(existsSync(dir), dir).toBe(false);
      for (const port of ports) {
        const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 5_000 });
        await expect(client.connect()).rejects.toThrow(/ECONNREFUSED/);
      }
    } finally {
      demo.kill('SIGKILL');
      // Should the servers have outlived the demo (the failure this test is for), they stop here.
      for (const dir of dirs) {
        try {
          process.kill(Number(readFileSync(join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]), 'SIGQUIT');
        } catch {
          // gone already
        }
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  it('a Ctrl-C during start-up exits at once and takes the servers started so far with it', async () => {
    // A temp dir of its own (searchable by the postgres user the servers run as under root): every
    // server directory in it is this demo's.
    const tmp = mkdtempSync(join(tmpdir(), 'pgferry-demo-test-'));
    chmodSync(tmp, 0o755);
    const demo = spawn(process.execPath, [CLI, 'demo', '--http-port', '0'], { env: { PATH: process.env['PATH'] ?? '', TMPDIR: tmp, PGFERRY_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const pids = new Set<number>();
    demo.stdout.on('data', (d: Buffer) => (out += d.toString()));
    demo.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor(() => {
        for (const dir of embeddedDirs(tmp)) {
          const pid = postmasterPid(dir);
          if (pid !== null && alive(pid)) pids.add(pid);
        }
        return pids.size > 0;
      }, 'a server of the demo running', 120_000);
      expect(out).not.toContain('pgferry is migrating'); // still starting up

      demo.kill('SIGINT');
      expect(await exited(demo), out).toBe(130);

      expect(embeddedDirs(tmp)).toEqual([]);
      for (const pid of pids) expect(alive(pid), `postmaster ${pid}`).toBe(false);
    } finally {
      demo.kill('SIGKILL');
      // Should servers have outlived the demo (the failure this test is for), they stop here.
      for (const dir of embeddedDirs(tmp)) {
        const pid = postmasterPid(dir);
        if (pid !== null && alive(pid)) process.kill(pid, 'SIGQUIT');
      }
      for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGQUIT');
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
