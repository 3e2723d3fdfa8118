import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../support/databases.js';
import { exited } from '../support/pgferry.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

/** The embedded servers' directories (under the temp dir) serving `port`, from their postmaster.pid (line 4: the port). */
function serverDirs(port: number): string[] {
  return readdirSync(tmpdir())
    .filter((d) => d.startsWith('pgferry-pg'))
    .map((d) => join(tmpdir(), d))
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
});
