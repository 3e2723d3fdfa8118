import { spawn } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CLI = fileURLToPath(new URL('../../../dist/cli.js', import.meta.url));

describe('a server that accepts connections and never answers', () => {
  const sockets: Socket[] = [];
  const server = createServer((s) => void sockets.push(s));
  let port = 0;
  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('is reported after one connect_timeout, not one for the TLS probe and another for the connection', async () => {
    const child = spawn(process.execPath, [CLI, 'schema', '--source', `postgresql://postgres@127.0.0.1:${port}/db?connect_timeout=1`], {
      env: { PATH: process.env['PATH'] ?? '', PGFERRY_LOG_LEVEL: 'silent' },
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(1);
    expect(stderr.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^pgferry: source: cannot connect to 127\\.0\\.0\\.1:${port}/db \\(.*timeout`, 'i'))]);
    expect(sockets).toHaveLength(1);
  });
});
