import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type pg from 'pg';
import { ConfigError } from '../errors.js';
import { clientConfig, type TableName } from '../pg/connection.js';
import { CUTOVER_KEYS, parseCutoverSettings, type CutoverKey, type CutoverSettings } from '../cutover/settings.js';

/** Validated settings for `pgferry start`. Built only by {@link loadSettings}. */
export interface Settings {
  sourceUrl: string;
  targetUrl: string;
  source: pg.ClientConfig;
  target: pg.ClientConfig;
  httpHost: string;
  httpPort: number;
  slot: string;
  publication: string;
  /** Empty: every table of the source database. */
  tables: TableName[];
  apiToken: string | undefined;
  logLevel: string;
  /** Create the source's schema on the target (pre-data before the copy, post-data after it). */
  schemaCopy: boolean;
  /**
   * Capture DDL on the source (event trigger, `pg_logical_emit_message`) and apply it on the target at
   * its point in the stream (src/ddl/). Off: a shape change stops apply until the target is altered.
   */
  captureDdl: boolean;
  /**
   * Ask the source to stream transactions that outgrow its `logical_decoding_work_mem` while they
   * run, and apply them as they arrive (src/apply/streamed.ts); off: they are sent whole at commit.
   */
  streamLargeTransactions: boolean;
  /** Source WAL retained by the slot above which pgferry warns (log and metric), in bytes. */
  slotRetentionWarningBytes: number;
  /** Source/target session pairs of the initial copy (1..64): tables, and block ranges of large tables, copied at once. */
  copyWorkers: number;
  /**
   * Target sessions that apply one large group of changes together (1..16, src/apply/lanes.ts); above
   * 1 the target needs `max_prepared_transactions` of at least `applySessions - 1`.
   */
  applySessions: number;
  /** Cutover thresholds, timeouts, verification depth and traffic switch (src/cutover/settings.ts). */
  cutover: CutoverSettings;
}

/** Raw values as they come from a file, the environment or flags; all optional. */
export interface RawSettings {
  source?: unknown;
  target?: unknown;
  httpHost?: unknown;
  httpPort?: unknown;
  slot?: unknown;
  publication?: unknown;
  tables?: unknown;
  apiToken?: unknown;
  logLevel?: unknown;
  schemaCopy?: unknown;
  captureDdl?: unknown;
  streamLargeTransactions?: unknown;
  slotRetentionWarning?: unknown;
  copyWorkers?: unknown;
  applySessions?: unknown;
}

/** The cutover's raw settings (config file keys; environment PGFERRY_CUTOVER_* / PGFERRY_PGBOUNCER_*). */
export interface RawSettings extends Partial<Record<CutoverKey, unknown>> {}

/** Where each setting can come from; the names a user sees in errors. */
const SETTINGS: { key: keyof RawSettings; flag: string; env: string }[] = [
  { key: 'source', flag: '--source', env: 'PGFERRY_SOURCE_URL' },
  { key: 'target', flag: '--target', env: 'PGFERRY_TARGET_URL' },
  { key: 'httpHost', flag: '--http-host', env: 'PGFERRY_HTTP_HOST' },
  { key: 'httpPort', flag: '--http-port', env: 'PGFERRY_HTTP_PORT' },
  { key: 'slot', flag: '--slot', env: 'PGFERRY_SLOT' },
  { key: 'publication', flag: '--publication', env: 'PGFERRY_PUBLICATION' },
  { key: 'tables', flag: '--tables', env: 'PGFERRY_TABLES' },
  { key: 'apiToken', flag: '--api-token', env: 'PGFERRY_API_TOKEN' },
  { key: 'logLevel', flag: '--log-level', env: 'PGFERRY_LOG_LEVEL' },
  { key: 'schemaCopy', flag: '--schema-copy', env: 'PGFERRY_SCHEMA_COPY' },
  { key: 'captureDdl', flag: '--capture-ddl', env: 'PGFERRY_CAPTURE_DDL' },
  { key: 'streamLargeTransactions', flag: '--stream-large-transactions', env: 'PGFERRY_STREAM_LARGE_TRANSACTIONS' },
  { key: 'slotRetentionWarning', flag: '--slot-retention-warning', env: 'PGFERRY_SLOT_RETENTION_WARNING' },
  { key: 'copyWorkers', flag: '--copy-workers', env: 'PGFERRY_COPY_WORKERS' },
  { key: 'applySessions', flag: '--apply-sessions', env: 'PGFERRY_APPLY_SESSIONS' },
  ...CUTOVER_KEYS.map(([key, env]) => ({ key, flag: `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`, env })),
];

const DEFAULTS = { httpHost: '127.0.0.1', httpPort: 8484, slot: 'pgferry', publication: 'pgferry', logLevel: 'info', slotRetentionWarning: '10GB', copyWorkers: 4, applySessions: 1 };
/** Each copy worker holds a source and a target connection: bounded well below typical max_connections. */
const MAX_COPY_WORKERS = 64;
const MAX_APPLY_SESSIONS = 16;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Merges defaults < config file < environment < flags and validates the result in one pass.
 * Throws one {@link ConfigError} listing every problem, each naming the setting and where it came from.
 */
export function loadSettings(flags: RawSettings & { config?: string }, env: NodeJS.ProcessEnv = process.env): Settings {
  const problems: string[] = [];
  const configPath = flags.config ?? env['PGFERRY_CONFIG'];
  const file = configPath ? readConfigFile(flags.config !== undefined ? '--config' : 'PGFERRY_CONFIG', configPath) : {};
  const raw: RawSettings = {};
  const origin: Record<string, string> = {};
  for (const s of SETTINGS) {
    const fromFlag = flags[s.key];
    const fromEnv = env[s.env];
    const fromFile = (file as Record<string, unknown>)[s.key];
    if (fromFlag !== undefined) [raw[s.key], origin[s.key]] = [fromFlag, s.flag];
    else if (fromEnv !== undefined && fromEnv !== '') [raw[s.key], origin[s.key]] = [fromEnv, s.env];
    else if (fromFile !== undefined) [raw[s.key], origin[s.key]] = [fromFile, `${s.key} in ${configPath}`];
  }
  for (const key of Object.keys(file)) {
    if (!SETTINGS.some((s) => s.key === key)) problems.push(`${configPath}: unknown setting "${key}" (known: ${SETTINGS.map((s) => s.key).join(', ')})`);
  }
  const where = (key: keyof RawSettings): string => {
    const s = SETTINGS.find((x) => x.key === key)!;
    return origin[key] ?? `${s.flag} (or ${s.env})`;
  };
  const str = (key: keyof RawSettings): string | undefined => {
    const v = raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'string' || typeof v === 'number') return String(v).trim();
    problems.push(`${where(key)}: expected a string`);
    return undefined;
  };

  const url = (key: 'source' | 'target'): [string, pg.ClientConfig | undefined] => {
    const v = str(key);
    if (!v) {
      problems.push(`${where(key)} is required: the ${key} database URL, e.g. postgresql://user@host:5432/db`);
      return ['', undefined];
    }
    try {
      return [v, clientConfig(where(key), v)];
    } catch (err) {
      problems.push((err as Error).message);
      return [v, undefined];
    }
  };
  const [sourceUrl, source] = url('source');
  const [targetUrl, target] = url('target');

  const portText = str('httpPort');
  const httpPort = portText === undefined ? DEFAULTS.httpPort : /^\d+$/.test(portText) ? Number(portText) : NaN;
  if (!Number.isInteger(httpPort) || httpPort < 0 || httpPort > 65535) problems.push(`${where('httpPort')}: "${portText}" is not a TCP port (0-65535)`);

  const name = (key: 'slot' | 'publication'): string => {
    const v = str(key) ?? DEFAULTS[key];
    if (!NAME.test(v)) problems.push(`${where(key)}: "${v}" is not a valid ${key} name (lower-case letters, digits and _, at most 63)`);
    return v;
  };
  const slot = name('slot');
  const publication = name('publication');

  let tables: TableName[] = [];
  const t = raw.tables;
  if (t !== undefined) {
    // Given but empty (`--tables ""` from an unset shell variable, `tables: []`, a YAML `tables:`
    // whose entries are all commented out, which parses as null) is a mistake, never "every table".
    const list = t === null ? [] : Array.isArray(t) ? t.map(String).map((s) => s.trim()).filter((s) => s !== '') : typeof t === 'string' ? splitList(t) : null;
    if (!list) problems.push(`${where('tables')}: expected a comma-separated list of tables`);
    else if (list.length === 0) problems.push(emptyTableList(where('tables')));
    else {
      try {
        tables = list.map(parseTableName);
      } catch (err) {
        problems.push(`${where('tables')}: ${(err as Error).message}`);
      }
    }
  }

  const logLevel = str('logLevel') ?? DEFAULTS.logLevel;
  if (!LOG_LEVELS.includes(logLevel)) problems.push(`${where('logLevel')}: "${logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);

  const retentionText = str('slotRetentionWarning') ?? DEFAULTS.slotRetentionWarning;
  const slotRetentionWarningBytes = parseSize(retentionText);
  if (slotRetentionWarningBytes === null) problems.push(`${where('slotRetentionWarning')}: "${retentionText}" is not a size (bytes, or a number with kB, MB, GB or TB, e.g. 10GB)`);

  const workersText = str('copyWorkers');
  const copyWorkers = workersText === undefined ? DEFAULTS.copyWorkers : /^\d+$/.test(workersText) ? Number(workersText) : NaN;
  if (!(copyWorkers >= 1 && copyWorkers <= MAX_COPY_WORKERS)) problems.push(`${where('copyWorkers')}: "${workersText}" is not a number of copy workers (1-${MAX_COPY_WORKERS}; each uses one source and one target connection)`);

  const sessionsText = str('applySessions');
  const applySessions = sessionsText === undefined ? DEFAULTS.applySessions : /^\d+$/.test(sessionsText) ? Number(sessionsText) : NaN;
  if (!(applySessions >= 1 && applySessions <= MAX_APPLY_SESSIONS)) problems.push(`${where('applySessions')}: "${sessionsText}" is not a number of apply sessions (1-${MAX_APPLY_SESSIONS})`);

  const schemaCopy = parseBoolean(raw.schemaCopy);
  if (schemaCopy === null) problems.push(`${where('schemaCopy')}: "${String(raw.schemaCopy)}" is not true or false`);

  const captureDdl = raw.captureDdl === undefined ? false : parseBoolean(raw.captureDdl);
  if (captureDdl === null) problems.push(`${where('captureDdl')}: "${String(raw.captureDdl)}" is not true or false`);

  const streamLargeTransactions = parseBoolean(raw.streamLargeTransactions);
  if (streamLargeTransactions === null) problems.push(`${where('streamLargeTransactions')}: "${String(raw.streamLargeTransactions)}" is not true or false`);

  const httpHost = str('httpHost') ?? DEFAULTS.httpHost;
  const apiToken = str('apiToken') || undefined;
  const cutover = parseCutoverSettings(raw, where, problems, parseSize);

  if (problems.length > 0 || !source || !target) throw new ConfigError(problems.join('\n'));
  return {
    sourceUrl,
    targetUrl,
    source,
    target,
    httpHost,
    httpPort,
    slot,
    publication,
    tables,
    apiToken,
    logLevel,
    schemaCopy: schemaCopy ?? true,
    captureDdl: captureDdl ?? false,
    streamLargeTransactions: streamLargeTransactions ?? true,
    slotRetentionWarningBytes: slotRetentionWarningBytes ?? 0,
    copyWorkers,
    applySessions,
    cutover,
  };
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3, tb: 1024 ** 4 };

/** Parses a size the way PostgreSQL writes them (`512MB`, `10GB`; units are powers of 1024); null if malformed. */
export function parseSize(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) return null;
  return Math.round(Number(m[1]) * unit);
}

function readConfigFile(from: string, path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new ConfigError(`${from}: cannot read ${path}; check the path`);
  }
  let doc: unknown;
  try {
    // YAML is a superset of JSON: both formats load here. Loaded on demand (most starts have no file).
    const { parse } = createRequire(import.meta.url)('yaml') as typeof import('yaml');
    doc = parse(text);
  } catch (err) {
    throw new ConfigError(`${from}: ${path} is not valid YAML/JSON (${(err as Error).message.split('\n')[0]})`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`${from}: ${path} must hold a mapping of settings`);
  return doc as Record<string, unknown>;
}

/** true/false (also on/off, yes/no, 1/0); undefined means the default (true); null is invalid. */
function parseBoolean(v: unknown): boolean | null {
  if (v === undefined || v === null || v === '') return true;
  if (typeof v === 'boolean') return v;
  const text = String(v).trim().toLowerCase();
  if (['true', 'on', 'yes', '1'].includes(text)) return true;
  if (['false', 'off', 'no', '0'].includes(text)) return false;
  return null;
}

/**
 * The problem for a table list that was given but names no table: an empty list never means
 * "every table" (that is leaving the setting out), since an unset shell variable would otherwise
 * widen a migration to the whole database.
 */
export function emptyTableList(setting: string): string {
  return `${setting}: the list of tables is empty; name at least one table, or leave the setting out to migrate every table`;
}

/** Splits `a, "b,c".d` on commas outside double quotes; empty entries are dropped. */
export function splitList(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (const ch of text) {
    if (ch === '"') quoted = !quoted;
    if (ch === ',' && !quoted) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((s) => s.trim()).filter((s) => s !== '');
}

/**
 * Parses `table`, `schema.table` or quoted parts (`"My Schema"."My Table"`) like PostgreSQL does:
 * unquoted parts fold to lower case, quoted parts are kept exactly ("" is a quote).
 */
export function parseTableName(text: string): TableName {
  const parts: string[] = [];
  let i = 0;
  const s = text.trim();
  while (i < s.length) {
    let part = '';
    if (s[i] === '"') {
      i++;
      for (;;) {
        if (i >= s.length) throw new Error(`unterminated quote in table name ${text}`);
        if (s[i] === '"') {
          if (s[i + 1] === '"') {
            part += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += s[i++];
      }
    } else {
      while (i < s.length && s[i] !== '.') part += s[i++];
      part = part.trim().toLowerCase();
    }
    if (part === '') throw new Error(`empty name in table name ${text}`);
    parts.push(part);
    if (i < s.length) {
      if (s[i] !== '.') throw new Error(`unexpected character after quoted name in ${text}`);
      i++;
      if (i >= s.length) throw new Error(`empty name in table name ${text}`);
    }
  }
  if (parts.length === 1) return { schema: 'public', name: parts[0]! };
  if (parts.length === 2) return { schema: parts[0]!, name: parts[1]! };
  throw new Error(`table name ${text} must be table or schema.table`);
}
