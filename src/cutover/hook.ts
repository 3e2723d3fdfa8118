import { spawn } from 'node:child_process';
import type pg from 'pg';
import { ErrorCodes, PgferryError, describeError, redact } from '../errors.js';

/** The target's connection details handed to a hook: where the applications go now. */
export function targetDetails(target: pg.ClientConfig, targetUrl: string): Record<string, string> {
  return {
    PGFERRY_TARGET_HOST: String(target.host ?? 'localhost'),
    PGFERRY_TARGET_PORT: String(target.port ?? 5432),
    PGFERRY_TARGET_DATABASE: String(target.database ?? ''),
    PGFERRY_TARGET_USER: String(target.user ?? ''),
    PGFERRY_TARGET_URL: targetUrl,
  };
}

/** Runs `command` with `sh -c` and the target's details in its environment; fails on a non-zero exit or after `timeoutMs`. */
export function runHook(command: string, details: Record<string, string>, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', command], { env: { ...process.env, ...details }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new PgferryError(ErrorCodes.CUTOVER, `cutoverHook: cannot run it (${describeError(err)}); check the command`));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const tail = redact(out.trim().split('\n').slice(-1)[0] ?? '');
      if (code === 0) resolve(tail);
      else reject(new PgferryError(ErrorCodes.CUTOVER, `cutoverHook: exited with ${signal ? `signal ${signal} (timed out after ${timeoutMs / 1000} s?)` : `code ${code}`}${tail ? ` (${tail})` : ''}; fix the command or its timeout (cutoverSwitchTimeout)`));
    });
  });
}

/** POSTs `{ event: 'cutover', target: {...} }` to `url`; fails unless it answers 2xx within `timeoutMs`. */
export async function callWebhook(url: string, details: Record<string, string>, timeoutMs: number): Promise<void> {
  const body = {
    event: 'cutover',
    target: { host: details['PGFERRY_TARGET_HOST'], port: Number(details['PGFERRY_TARGET_PORT']), database: details['PGFERRY_TARGET_DATABASE'], user: details['PGFERRY_TARGET_USER'] },
  };
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new PgferryError(ErrorCodes.CUTOVER, `cutoverWebhook: ${url} unreachable (${describeError((err as { cause?: unknown }).cause ?? err)}); check the URL`);
  }
  if (!res.ok) throw new PgferryError(ErrorCodes.CUTOVER, `cutoverWebhook: ${url} answered HTTP ${res.status}; check the receiving service`);
}
