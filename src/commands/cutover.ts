import { ConfigError, ErrorCodes, PgferryError, describeError } from '../errors.js';
import type { CutoverState } from '../cutover/state.js';
import { apiUrl, fetchStatus } from '../status-report.js';

/** How often `/status` is polled while the cutover runs. */
const POLL_MS = 200;

/**
 * `pgferry cutover`: POSTs /cutover to a running pgferry, then follows its steps in /status,
 * printing each as it starts and ends. Returns the exit code: 0 done, 1 rolled back or failed.
 */
export async function runCutoverCommand(flags: { url?: string; token?: string }, out: (text: string) => void): Promise<number> {
  const base = flags.url ?? (process.env['PGFERRY_URL'] || 'http://127.0.0.1:8484');
  const token = flags.token ?? (process.env['PGFERRY_API_TOKEN'] || undefined);
  const url = apiUrl(base, '/cutover');
  if (!token) throw new ConfigError('--token: the API token is required (or PGFERRY_API_TOKEN): the value pgferry start was given');
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    throw new PgferryError(ErrorCodes.CONNECTION, `cannot reach pgferry at ${url.origin} (${describeError((err as { cause?: unknown }).cause ?? err)}); is pgferry start running there? Give its address with --url or PGFERRY_URL`);
  }
  const body = (await res.json().catch(() => ({}))) as { error?: string };
  if (res.status === 401 || res.status === 403) throw new PgferryError(ErrorCodes.CONFIG, `${url.href} refused (HTTP ${res.status}): ${body.error ?? 'unauthorized'}`);
  if (res.status !== 202) throw new PgferryError(ErrorCodes.CUTOVER, `cutover not started (HTTP ${res.status}): ${body.error ?? 'unexpected answer'}`);
  out(`cutover started at ${url.origin}\n`);

  const printed = new Map<string, string>();
  for (;;) {
    const doc = (await fetchStatus(base, token)) as { cutover?: CutoverState | null; phase?: string };
    const c = doc.cutover;
    for (const step of c?.steps ?? []) {
      const key = `${step.name}:${step.startedAt}`;
      const line = step.outcome === 'running' ? `  ${step.name.padEnd(10)} ...` : `  ${step.name.padEnd(10)} ${step.outcome === 'ok' ? 'ok' : 'FAILED'} in ${(step.durationSeconds ?? 0).toFixed(2)} s${step.detail ? `: ${step.detail}` : ''}`;
      if (printed.get(key) === line) continue;
      if (step.outcome === 'running' && printed.has(key)) continue;
      printed.set(key, line);
      out(`${line}\n`);
    }
    if (c && c.state !== 'running') {
      if (c.state === 'done') {
        out(`cutover done: writes were blocked for ${(c.writeBlockedSeconds ?? 0).toFixed(2)} s; the applications use the target, the source stays read-only\n`);
        return 0;
      }
      out(`cutover ${c.state === 'rolled back' ? 'rolled back (the source takes writes again, streaming continues)' : 'FAILED'}: ${c.error ?? 'unknown reason'}\n`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
