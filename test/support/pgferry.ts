import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { loadSettings, type RawSettings } from '../../src/config/settings.js';
import { startApp, type App } from '../../src/app.js';
import { createLogger, type Logger } from '../../src/observability/logger.js';
import { fingerprint } from '../../src/demo/sample.js';
import { waitFor } from './databases.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

/** Starts pgferry in this process (HTTP on a free port); `log` replaces the default (silent) logger. */
export async function startInProcess(flags: RawSettings, opts: { log?: Logger } = {}): Promise<App> {
  const settings = loadSettings({ httpPort: 0, ...flags }, {});
  return startApp(settings, opts.log ?? createLogger(process.env['PGFERRY_TEST_LOG'] ?? 'silent', { pretty: false }));
}

/** A logger writing JSON lines into `lines`, at `level`. */
export function captureLogger(lines: string[], level = 'debug'): Logger {
  return createLogger(level, { pretty: false, destination: { write: (line: string) => void lines.push(line) } });
}

/** Starts the built CLI (`pgferry start`) as a child process, so it can be killed with SIGKILL. */
export function startChild(args: string[]): ChildProcess & { output: () => string } {
  const child = spawn(process.execPath, [CLI, 'start', '--http-port', '0', ...args], {
    env: { PATH: process.env['PATH'] ?? '', PGFERRY_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return Object.assign(child, { output: () => out });
}

/** Resolves with the exit code (or signal) once the child has exited. */
export function exited(child: ChildProcess): Promise<number | string> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  if (child.signalCode !== null) return Promise.resolve(child.signalCode);
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
}

/** Waits until every table has the same content on both sides, then returns the fingerprints. */
export async function waitForIdentical(source: pg.Client, target: pg.Client, tables: string[], timeoutMs = 120_000): Promise<Record<string, string>> {
  let last: [Record<string, string>, Record<string, string>] | null = null;
  try {
    await waitFor(
      async () => {
        last = [await fingerprint(source, tables), await fingerprint(target, tables)];
        return JSON.stringify(last[0]) === JSON.stringify(last[1]);
      },
      'source and target to be identical',
      timeoutMs,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}\nsource: ${JSON.stringify(last?.[0])}\ntarget: ${JSON.stringify(last?.[1])}`);
  }
  return last![0];
}

/** The slot's confirmed_flush_lsn as a bigint (null when the slot does not exist). */
export async function confirmedFlush(source: pg.Client, slot: string): Promise<bigint | null> {
  const { rows: [r] } = await source.query<{ lsn: string | null }>(`SELECT (confirmed_flush_lsn - '0/0')::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
  return r?.lsn ? BigInt(r.lsn) : null;
}

/** The source's current WAL insert position as a bigint (past every commit made so far, flushed or not). */
export async function currentWal(source: pg.Client): Promise<bigint> {
  const { rows: [r] } = await source.query<{ lsn: string }>(`SELECT (pg_current_wal_insert_lsn() - '0/0')::text AS lsn`);
  return BigInt(r!.lsn);
}

/** Waits a random time up to `maxMs`: the moment a fault is injected, never used to synchronise. */
export function randomMoment(random: () => number, minMs: number, maxMs: number): Promise<void> {
  return new Promise((r) => setTimeout(r, minMs + random() * (maxMs - minMs)));
}

/** Spaces out an application-like workload's requests (workload pacing, never synchronisation). */
export function pace(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Runs the built CLI with `args` without blocking this process (which may serve the HTTP API the
 * command talks to); resolves with its exit code and output.
 */
export function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env['PATH'] ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}
