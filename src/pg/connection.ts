import { readFileSync } from 'node:fs';
import pg from 'pg';
import { parse } from 'pg-connection-string';
import { ConfigError, ErrorCodes, PgferryError, describeError } from '../errors.js';

const SSL_MODES = new Set(['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']);

/**
 * Turns a libpq-style URL into a `pg` client configuration with libpq's meaning of every option
 * (`sslmode=require` encrypts without verifying, `verify-full` checks the chain and the host name).
 * Throws a {@link ConfigError} naming `setting` for anything malformed, including unreadable
 * certificate files, so a typo never surfaces later as a stack trace.
 */
export function clientConfig(setting: string, url: string): pg.ClientConfig {
  if (!/^postgres(ql)?:\/\//i.test(url)) {
    throw new ConfigError(`${setting}: expected a postgresql:// URL (for example postgresql://user@host:5432/db)`);
  }
  for (const file of ['sslrootcert', 'sslcert', 'sslkey']) {
    const path = new URLSearchParams(url.split('?')[1] ?? '').get(file);
    if (path) {
      try {
        readFileSync(path);
      } catch {
        throw new ConfigError(`${setting}: ${file} file ${path} cannot be read; fix the path or its permissions`);
      }
    }
  }
  let parsed;
  try {
    parsed = parse(url, { useLibpqCompat: true });
  } catch (err) {
    throw new ConfigError(`${setting}: invalid connection URL (${(err as Error).message.split('\n')[0]})`);
  }
  const sslmode = parsed['sslmode'];
  if (typeof sslmode === 'string' && !SSL_MODES.has(sslmode)) {
    throw new ConfigError(`${setting}: sslmode=${sslmode} is not one of ${[...SSL_MODES].join(', ')}`);
  }
  if (!parsed.database) throw new ConfigError(`${setting}: the URL names no database (add /dbname to the URL)`);
  const config: pg.ClientConfig = {
    host: parsed.host ?? undefined,
    port: parsed.port ? Number(parsed.port) : undefined,
    user: parsed.user ?? undefined,
    password: parsed.password ?? undefined,
    database: parsed.database,
    ssl: parsed.ssl as pg.ClientConfig['ssl'],
    application_name: (parsed.application_name as string | undefined) ?? 'pgferry',
    options: parsed.options,
    keepAlive: true,
    connectionTimeoutMillis: 15_000,
  };
  return config;
}

/** `user@host:port/db` for logs and status: enough to tell servers apart, never a password. */
export function describeServer(config: pg.ClientConfig): string {
  return `${config.user ?? ''}@${config.host ?? 'localhost'}:${config.port ?? 5432}/${config.database ?? ''}`;
}

/** Quotes an SQL identifier the way `quote_ident` does (always quoted: no keyword list to keep). */
export function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Quotes an SQL string literal (standard_conforming_strings = on, the default since 9.1). */
export function literal(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** A schema-qualified table name. */
export interface TableName {
  schema: string;
  name: string;
}

/** `"schema"."name"`, safe for any characters. */
export function qualified(t: TableName): string {
  return `${ident(t.schema)}.${ident(t.name)}`;
}

/** `schema.name` for humans (logs, status keys). */
export function tableKey(t: TableName): string {
  return `${t.schema}.${t.name}`;
}

/**
 * Session settings pgferry uses on both sides: every value's text form unambiguous and the same on
 * both servers whatever their own settings (dates, intervals, floats, bytea, money, time zone, also
 * for deparsed defaults; xml content fragments accepted, as pg_dump does); row security raises an error instead of silently filtering rows out of a
 * copy, an apply or a verify; commits durable before they are confirmed.
 */
export const SESSION_OPTIONS =
  '-c datestyle=ISO,YMD -c intervalstyle=postgres -c extra_float_digits=3 -c bytea_output=hex -c lc_monetary=C -c timezone=UTC -c xmloption=content -c row_security=off -c synchronous_commit=on';

/** `config` with {@link SESSION_OPTIONS} appended to any `options` it already has. */
export function withSessionOptions(config: pg.ClientConfig): pg.ClientConfig {
  if (config.options?.includes(SESSION_OPTIONS)) return config;
  return { ...config, options: [config.options, SESSION_OPTIONS].filter(Boolean).join(' ') };
}

/**
 * Opens a client with {@link SESSION_OPTIONS}. A failure to connect is one retryable
 * {@link PgferryError} naming the side and the server, password-free. Later connection errors
 * surface as the failure of the next query.
 */
export async function connectClient(config: pg.ClientConfig, side: 'source' | 'target'): Promise<pg.Client> {
  const client = new pg.Client(withSessionOptions(config));
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    throw new PgferryError(ErrorCodes.CONNECTION, `${side}: cannot connect to ${config.host ?? 'localhost'}:${config.port ?? 5432}/${config.database ?? ''} (${describeError(err)})`, { cause: err, retryable: true });
  }
  return client;
}

/**
 * Cancels the statement backend `pid()` runs (from a session `connect` opens when first needed),
 * again every 200 ms until `ended` settles: a cancel that reaches a backend between two statements
 * is lost, and a server finishes (and commits) a statement whose client is gone. `pid()` null:
 * nothing to cancel right now. Never throws; closes its session.
 */
export async function cancelUntilEnded(connect: () => Promise<pg.Client>, pid: () => number | null, ended: Promise<unknown>): Promise<void> {
  let settled = false;
  const done = ended.then(
    () => void (settled = true),
    () => void (settled = true),
  );
  let helper: pg.Client | null = null;
  try {
    while (!settled) {
      const p = pid();
      if (p !== null) {
        helper ??= await connect().catch(() => null);
        await helper?.query('SELECT pg_catalog.pg_cancel_backend($1)', [p]).catch(() => {});
      }
      await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 200))]);
    }
  } finally {
    await helper?.end().catch(() => {});
  }
}
