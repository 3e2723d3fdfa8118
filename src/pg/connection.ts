import { readFileSync } from 'node:fs';
import pg from 'pg';
import { parse } from 'pg-connection-string';
import { ConfigError } from '../errors.js';

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
