import { ConfigError, ErrorCodes, PgferryError, describeError } from './errors.js';

/** The parts of the `/status` document (see `statusJson`) that the report reads; all optional, older servers omit some. */
export interface StatusDocument {
  phase?: string;
  appliedLsn?: string | null;
  confirmedLsn?: string | null;
  sourceLsn?: string | null;
  lagBytes?: number | null;
  lagSeconds?: number | null;
  transactionsApplied?: number;
  changesApplied?: number;
  changesPerSecond?: number | null;
  lastError?: string | null;
  schemaFinishing?: { state?: string; error?: string | null } | null;
  largeTransactions?: { inProgress: number; changes: number };
  startedAt?: string;
  connected?: { source?: boolean; target?: boolean };
  slot?: { retainedWalBytes?: number | null; walStatus?: string | null; retentionWarningBytes?: number | null };
  tables?: Record<string, { state?: string; rowsCopied?: number; bytesCopied?: number; estimatedRows?: number | null; etaSeconds?: number | null }>;
}

/** `path` on a pgferry HTTP API at `baseUrl`; a malformed or non-HTTP address is a one-line --url error. */
export function apiUrl(baseUrl: string, path: string): URL {
  try {
    const url = new URL(path, baseUrl);
    if (url.protocol === 'http:' || url.protocol === 'https:') return url;
  } catch {
    // reported below
  }
  throw new ConfigError(`--url: "${baseUrl}" is not an http:// address of a pgferry HTTP API (e.g. http://127.0.0.1:8484)`);
}

/** Fetches `/status` from a running pgferry; errors are one line naming the address and the remedy. */
export async function fetchStatus(baseUrl: string, token?: string): Promise<StatusDocument> {
  const url = apiUrl(baseUrl, '/status');
  let res: Response;
  try {
    res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    throw new PgferryError(ErrorCodes.CONNECTION, `cannot reach pgferry at ${url.origin} (${describeError(cause ?? err)}); is pgferry start running there? Give its address with --url or PGFERRY_URL`);
  }
  if (!res.ok) throw new PgferryError(ErrorCodes.CONNECTION, `${url.href} answered HTTP ${res.status}; is that a pgferry HTTP API?`);
  try {
    return (await res.json()) as StatusDocument;
  } catch {
    throw new PgferryError(ErrorCodes.PROTOCOL, `${url.href} did not answer JSON; is that a pgferry HTTP API?`);
  }
}

/** A status document as a few aligned lines a person reads at a glance. */
export function formatStatusReport(s: StatusDocument): string {
  const lines: [string, string][] = [];
  lines.push(['phase', `${s.phase ?? 'unknown'}${s.startedAt ? `   (running since ${s.startedAt})` : ''}`]);
  lines.push(['lag', s.lagBytes === null || s.lagBytes === undefined ? 'unknown' : `${bytes(s.lagBytes)} of source WAL, ${seconds(s.lagSeconds ?? 0)} behind the source`]);
  lines.push(['applied', `${s.appliedLsn ?? '-'}   confirmed ${s.confirmedLsn ?? '-'}   source at ${s.sourceLsn ?? '-'}`]);
  const rate = s.changesPerSecond === null || s.changesPerSecond === undefined ? '' : `, ${count(s.changesPerSecond)}/s`;
  lines.push(['changes', `${count(s.changesApplied ?? 0)} applied${rate} in ${count(s.transactionsApplied ?? 0)} transactions`]);
  if (s.largeTransactions && s.largeTransactions.inProgress > 0) {
    lines.push(['large txns', `${s.largeTransactions.inProgress} still running on the source, ${count(s.largeTransactions.changes)} changes applied ahead of the commit`]);
  }
  if (s.slot) {
    const retained = s.slot.retainedWalBytes === null || s.slot.retainedWalBytes === undefined ? 'unknown' : bytes(s.slot.retainedWalBytes);
    const limit = s.slot.retentionWarningBytes ? ` (warning above ${bytes(s.slot.retentionWarningBytes)})` : '';
    const over = s.slot.retentionWarningBytes && (s.slot.retainedWalBytes ?? 0) > s.slot.retentionWarningBytes ? '   WARNING: above the threshold' : '';
    lines.push(['slot', `retains ${retained} of source WAL${limit}, wal_status ${s.slot.walStatus ?? 'unknown'}${over}`]);
  }
  if (s.connected) lines.push(['connected', `source ${s.connected.source ? 'yes' : 'no'}, target ${s.connected.target ? 'yes' : 'no'}`]);
  if (s.schemaFinishing && s.schemaFinishing.state !== 'done') {
    lines.push(['schema', s.schemaFinishing.state === 'failed' ? `last step FAILED: ${s.schemaFinishing.error ?? 'unknown'}` : 'validating foreign keys and analyzing tables (a cutover waits for it)']);
  }
  lines.push(['last error', s.lastError ?? 'none']);
  let out = lines.map(([k, v]) => `${k.padEnd(11)} ${v}\n`).join('');

  const tables = Object.entries(s.tables ?? {});
  if (tables.length > 0) {
    const copied = tables.filter(([, t]) => t.state === 'copied').length;
    out += `\ninitial copy: ${copied} of ${tables.length} tables copied\n`;
    const width = Math.min(48, Math.max(...tables.map(([k]) => k.length)));
    for (const [name, t] of tables) {
      const rows = t.rowsCopied ?? 0;
      let detail = '';
      if (t.state === 'copied') detail = `${count(rows)} rows`;
      else if (t.state === 'copying') {
        const est = t.estimatedRows;
        const pct = est ? ` ${String(Math.min(99, Math.floor((rows / est) * 100))).padStart(3)}%` : '';
        const eta = t.etaSeconds === null || t.etaSeconds === undefined ? '' : `  ETA ${seconds(t.etaSeconds)}`;
        detail = `${count(rows)}${est ? ` / ~${count(est)}` : ''} rows${pct}${eta}`;
      } else if (t.estimatedRows) detail = `~${count(t.estimatedRows)} rows`;
      out += `  ${name.padEnd(width)}  ${(t.state ?? '').padEnd(8)} ${detail}`.trimEnd() + '\n';
    }
  }
  return out;
}

function count(n: number): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: 1 });
}

function bytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

function seconds(s: number): string {
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}
