import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

/** The built CLI: `npm test` builds first (pretest); run `npx tsc -p tsconfig.json` when running vitest alone. */
const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with only PATH and the given variables: no PGFERRY_* from the caller's environment. */
function run(args: string[], env: Record<string, string> = {}): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    env: { PATH: process.env['PATH'] ?? '', ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Every stderr line is a one-line `pgferry:` message; none is a stack frame. */
function expectCleanErrors(r: Run): string[] {
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  expect(lines.length).toBeGreaterThan(0);
  for (const line of lines) expect(line).toMatch(/^pgferry: /);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  return lines;
}

beforeAll(() => {
  expect(existsSync(CLI), `${CLI} is missing: build first (npx tsc -p tsconfig.json)`).toBe(true);
});

describe('pgferry CLI', () => {
  it('start without settings exits 2 naming --source and --target', () => {
    const r = run(['start']);
    expect(r.status).toBe(2);
    const lines = expectCleanErrors(r);
    expect(lines.some((l) => l.startsWith('pgferry: --source'))).toBe(true);
    expect(lines.some((l) => l.startsWith('pgferry: --target'))).toBe(true);
  });

  it('start --http-port abc names --http-port', () => {
    const r = run(['start', '--http-port', 'abc']);
    expect(r.status).toBe(2);
    const lines = expectCleanErrors(r);
    expect(lines).toContain('pgferry: --http-port: "abc" is not a TCP port (0-65535)');
  });

  it('an unknown flag exits 2', () => {
    const r = run(['start', '--no-such-flag']);
    expect(r.status).toBe(2);
    const lines = expectCleanErrors(r);
    expect(lines.join('\n')).toContain('--no-such-flag');
  });

  it('an unknown command exits 2', () => {
    const r = run(['launch']);
    expect(r.status).toBe(2);
    expectCleanErrors(r);
  });

  it('--help exits 0 and lists the commands', () => {
    const r = run(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^Usage: pgferry/);
    expect(r.stdout).toContain('start');
  });

  it('start --help exits 0 and lists --source and --target', () => {
    const r = run(['start', '--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('--source <url>');
    expect(r.stdout).toContain('--target <url>');
  });

  it('never prints the password of a bad URL from the environment', () => {
    const r = run(['start'], { PGFERRY_SOURCE_URL: 'postgresql://u:s3cret@h/db?sslmode=bogus' });
    expect(r.status).toBe(2);
    const lines = expectCleanErrors(r);
    expect(lines).toContain('pgferry: PGFERRY_SOURCE_URL: sslmode=bogus is not one of disable, allow, prefer, require, verify-ca, verify-full');
    expect(r.stdout + r.stderr).not.toContain('s3cret');
  });

  it('never prints the password of a bad URL given as a flag', () => {
    const r = run(['start', '--source', 'postgresql://u:s3cret@h', '--target', 'postgresql://u:s3cret@h/db?sslmode=verify-ca']);
    expect(r.status).toBe(2);
    expectCleanErrors(r);
    expect(r.stdout + r.stderr).not.toContain('s3cret');
  });
});
