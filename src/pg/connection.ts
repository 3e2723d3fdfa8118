import { readFileSync } from 'node:fs';
import pg from 'pg';
import { parse } from 'pg-connection-string';
import pgpass from 'pgpass';
import { ConfigError, ErrorCodes, PgferryError, describeError } from '../errors.js';

const SSL_MODES = new Set(['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']);

type TlsOptions = Exclude<pg.ClientConfig['ssl'], boolean | undefined>;

/**
 * Configurations whose sslmode leaves encryption to the server ({@link negotiateSsl}): prefer
 * (libpq's default) or allow, with the TLS options to use if it is TLS (certificate files kept).
 */
const NEGOTIABLE = new WeakMap<pg.ClientConfig, { mode: 'prefer' | 'allow'; tls: TlsOptions }>();

const ENCODINGS = '@ as %40, : as %3A, / as %2F, # as %23, ? as %3F';

/** The URL query parameters {@link clientConfig} reads; any other is refused. */
const URL_PARAMETERS = new Set(['host', 'port', 'user', 'password', 'sslmode', 'ssl', 'sslrootcert', 'sslcert', 'sslkey', 'application_name', 'options', 'connect_timeout']);

/**
 * Does an `@` follow the host part (in the database name, a parameter name or a fragment)? The
 * host part ends at the first / ? or #, so a password holding one of those ends it early, and the
 * rest of the credentials and the real host land there: `postgresql://u:p@ss/word@host/db` would
 * otherwise connect to host `ss`, database `word@host/db`. An @ in a parameter value
 * (`application_name=me@host`) is left alone.
 */
function atAfterHost(url: string): boolean {
  const rest = url.replace(/^postgres(ql)?:\/\/[^/?#]*/i, '');
  const hash = rest.indexOf('#');
  if (hash >= 0 && rest.slice(hash).includes('@')) return true;
  const [path = '', query = ''] = (hash >= 0 ? rest.slice(0, hash) : rest).split(/\?(.*)/s);
  return path.includes('@') || query.split('&').some((pair) => pair.split('=')[0]!.includes('@'));
}

/**
 * Turns a libpq-style URL into a `pg` client configuration with libpq's meaning of every option
 * (`sslmode=require` encrypts without verifying, `verify-full` checks the chain and the host name).
 * Throws a {@link ConfigError} naming `setting` for anything malformed, including unreadable
 * certificate files and credentials that would be misread for want of percent-encoding, so a typo
 * never surfaces later as a stack trace or a connection to the wrong host; never with the URL in it.
 */
export function clientConfig(setting: string, url: string): pg.ClientConfig {
  if (!/^postgres(ql)?:\/\//i.test(url)) {
    throw new ConfigError(`${setting}: expected a postgresql:// URL (for example postgresql://user@host:5432/db)`);
  }
  if (atAfterHost(url)) {
    throw new ConfigError(`${setting}: the URL has an @ after its host part, as when the password holds an unencoded / # or ?; percent-encode special characters in the user name and password (${ENCODINGS})`);
  }
  // A parameter pgferry does not read would be ignored silently: a misspelt sslmode would connect
  // with the default (prefer), target_session_attrs would not be honoured. libpq refuses unknown ones too.
  const unused = [...new URLSearchParams(url.split('?')[1]?.split('#')[0] ?? '').keys()].filter((k) => !URL_PARAMETERS.has(k));
  if (unused.length > 0) {
    throw new ConfigError(`${setting}: connection parameter${unused.length > 1 ? 's' : ''} ${unused.map((k) => `"${k}"`).join(', ')} ${unused.length > 1 ? 'are' : 'is'} not one pgferry reads (it reads ${[...URL_PARAMETERS].join(', ')}); fix the name or remove it`);
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
  const parseUrl = (text: string): ReturnType<typeof parse> => {
    try {
      return parse(text, { useLibpqCompat: true });
    } catch (err) {
      // With credentials in the URL, a character in them that URLs reserve is a likely cause.
      const hint = text.includes('@') ? `; if the user name or password holds special characters, percent-encode them (${ENCODINGS})` : '';
      throw new ConfigError(`${setting}: invalid connection URL (${(err as Error).message.split('\n')[0]})${hint}`);
    }
  };
  let parsed = parseUrl(url);
  // No sslmode in the URL: PGSSLMODE, else libpq's default, prefer (unless the driver's own ssl= is given).
  const query = new URLSearchParams(url.split('?')[1] ?? '');
  const fromEnv = !query.has('sslmode') && !query.has('ssl') ? process.env['PGSSLMODE'] : undefined;
  const sslmode = (parsed['sslmode'] as string | undefined) ?? (query.has('ssl') ? undefined : fromEnv ?? 'prefer');
  if (sslmode !== undefined && !SSL_MODES.has(sslmode)) {
    throw new ConfigError(`${fromEnv ? 'PGSSLMODE' : setting}: sslmode=${sslmode} is not one of ${[...SSL_MODES].join(', ')}`);
  }
  if (sslmode !== undefined && !query.has('sslmode')) parsed = parseUrl(`${url}${url.includes('?') ? '&' : '?'}sslmode=${encodeURIComponent(sslmode)}`);
  if (!parsed.database) throw new ConfigError(`${setting}: the URL names no database (add /dbname to the URL)`);
  const given = parsed.ssl as pg.ClientConfig['ssl'];
  const negotiable = sslmode === 'prefer' || sslmode === 'allow' ? { mode: sslmode as 'prefer' | 'allow', tls: { ...(typeof given === 'object' ? given : {}), rejectUnauthorized: false } } : null;
  const config: pg.ClientConfig = {
    host: parsed.host ?? undefined,
    port: parsed.port ? Number(parsed.port) : undefined,
    user: parsed.user ?? undefined,
    // An empty one counts as none, as in libpq. pg calls the function with the effective
    // connection parameters (PGUSER and defaults applied), and takes undefined as no password;
    // its types know neither.
    password: parsed.password || (passwordFromEnvironment as unknown as () => Promise<string>),
    database: parsed.database,
    // prefer/allow: settled by negotiateSsl; until then, the first connection libpq would try.
    ssl: negotiable ? (negotiable.mode === 'prefer' ? negotiable.tls : false) : given,
    application_name: (parsed.application_name as string | undefined) ?? 'pgferry',
    options: parsed.options,
    keepAlive: true,
    connectionTimeoutMillis: connectTimeout(setting, parsed['connect_timeout']),
  };
  if (negotiable) NEGOTIABLE.set(config, negotiable);
  return config;
}

/**
 * A password the URL does not give, where libpq looks next: PGPASSWORD, then the password file
 * (~/.pgpass, or the file PGPASSFILE names; ignored unless mode 0600), matched on host, port,
 * database and user. Read here rather than by `pg` itself, which warns that it will stop reading it.
 */
function passwordFromEnvironment(params: pgpass.ConnectionInfo): Promise<string | undefined> {
  const env = process.env['PGPASSWORD'];
  if (env) return Promise.resolve(env);
  return new Promise((resolve) => pgpass(params, resolve));
}

/** libpq's connect_timeout (seconds; 0 or absent: pgferry's 15 s, since waiting for ever hides a blackholed host) in milliseconds. */
function connectTimeout(setting: string, value: unknown): number {
  if (value === undefined || value === null || value === '') return 15_000;
  const seconds = Number(value);
  if (!Number.isInteger(seconds) || seconds < 0) throw new ConfigError(`${setting}: connect_timeout=${String(value)} is not a whole number of seconds`);
  return seconds === 0 ? 15_000 : seconds * 1000;
}

/**
 * Settles encryption for configurations from {@link clientConfig} whose sslmode is `prefer` (or
 * unset: libpq's default) or `allow`, as libpq does, once, before anything connects: `prefer`
 * tries TLS (unverified) and falls back to plaintext when the server refuses TLS or rejects the
 * encrypted connection; `allow` tries plaintext and falls back to TLS when the server rejects it.
 * Sets `config.ssl` in place (copies made afterwards inherit it). A server that does not answer
 * at all (refused, timed out) fails here as {@link connectClient} would, rather than making the
 * first real connection wait as long again; one that answers with an error (a password, a server
 * starting up) is left to the first real connection.
 */
export async function negotiateSsl(source?: pg.ClientConfig | null, target?: pg.ClientConfig | null): Promise<void> {
  await Promise.all(
    ([[source, 'source'], [target, 'target']] as const).map(async ([config, side]) => {
      const how = config ? NEGOTIABLE.get(config) : undefined;
      if (!config || !how) return;
      NEGOTIABLE.delete(config);
      const [first, second] = how.mode === 'prefer' ? [how.tls, false as const] : [false as const, how.tls];
      const err = await tryConnect({ ...config, ssl: first });
      if (err === null) {
        config.ssl = first;
      } else if (/does not support SSL/i.test(describeError(err))) {
        config.ssl = false; // final: plaintext is all this server speaks
      } else if (!/^[0-9A-Z]{5}$/.test(String((err as { code?: unknown }).code ?? ''))) {
        throw cannotConnect(config, side, err); // no SQLSTATE: the server never answered
      } else {
        // A pg_hba rejection of this kind of connection may accept the other; any other failure
        // (network, password, a server starting up) is left to the first real connection.
        const rejected = /^28/.test(String((err as { code?: unknown }).code ?? ''));
        config.ssl = rejected && (await tryConnect({ ...config, ssl: second })) === null ? second : first;
      }
    }),
  );
}

async function tryConnect(config: pg.ClientConfig): Promise<unknown> {
  const client = new pg.Client(config);
  client.on('error', () => {});
  try {
    await client.connect();
    return null;
  } catch (err) {
    return err;
  } finally {
    await client.end().catch(() => {});
  }
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
 * copy, an apply or a verify; commits durable before they are confirmed. The server probes an idle
 * connection after 30 s and drops it after about a minute without an answer (instead of the
 * system's two hours): the sessions of a pgferry whose host crashed give back the instance lock,
 * their open transactions' row locks and prepared-share slots in time for a restart elsewhere.
 */
export const SESSION_OPTIONS =
  '-c datestyle=ISO,YMD -c intervalstyle=postgres -c extra_float_digits=3 -c bytea_output=hex -c lc_monetary=C -c timezone=UTC -c xmloption=content -c row_security=off -c synchronous_commit=on' +
  ' -c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3';

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
    throw cannotConnect(config, side, err);
  }
  return client;
}

function cannotConnect(config: pg.ClientConfig, side: 'source' | 'target', err: unknown): PgferryError {
  return new PgferryError(ErrorCodes.CONNECTION, `${side}: cannot connect to ${config.host ?? 'localhost'}:${config.port ?? 5432}/${config.database ?? ''} (${describeError(err)})`, { cause: err, retryable: true });
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
