/**
 * Every error pgferry raises on purpose. `code` is stable (logs, alerts and tests match on it);
 * `message` is one line for a human that names the object and the remedy.
 */
export const ErrorCodes = {
  CONFIG: 'PGFERRY_ERR_CONFIG',
  PREFLIGHT: 'PGFERRY_ERR_PREFLIGHT',
  CONNECTION: 'PGFERRY_ERR_CONNECTION',
  PROTOCOL: 'PGFERRY_ERR_PROTOCOL',
  APPLY: 'PGFERRY_ERR_APPLY',
  COPY: 'PGFERRY_ERR_COPY',
  STATE: 'PGFERRY_ERR_STATE',
  SCHEMA: 'PGFERRY_ERR_SCHEMA',
  CUTOVER: 'PGFERRY_ERR_CUTOVER',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** Base class: a stable code, whether retrying can help, and the underlying cause. */
export class PgferryError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, opts: { cause?: unknown; retryable?: boolean } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'PgferryError';
    this.code = code;
    this.retryable = opts.retryable ?? false;
  }
}

/** A setting is missing or invalid. The CLI prints it as one line and exits with code 2. */
export class ConfigError extends PgferryError {
  constructor(message: string) {
    super(ErrorCodes.CONFIG, message);
    this.name = 'ConfigError';
  }
}

/** The source or target is not ready for a migration; the message carries the remedy. */
export class PreflightError extends PgferryError {
  constructor(message: string) {
    super(ErrorCodes.PREFLIGHT, message);
    this.name = 'PreflightError';
  }
}

/** Schema copy cannot proceed: an object on the target differs, or the target lacks an extension. Fatal. */
export class SchemaError extends PgferryError {
  constructor(message: string, cause?: unknown) {
    super(ErrorCodes.SCHEMA, message, cause === undefined ? {} : { cause });
    this.name = 'SchemaError';
  }
}

const PASSWORD_IN_URL = /(postgres(?:ql)?:\/\/[^:/@\s]*:)[^@\s]*@/gi;
const PASSWORD_PARAM = /(password=)[^&\s]*/gi;

/** Removes passwords from any text that may contain a connection URL. */
export function redact(text: string): string {
  return text.replace(PASSWORD_IN_URL, '$1****@').replace(PASSWORD_PARAM, '$1****');
}

/**
 * Is this a connection-level failure that a reconnect can fix (network, server restart,
 * admin shutdown), as opposed to a data or programming error?
 */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | null;
  if (!e) return false;
  if (typeof e.code === 'string') {
    if (/^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH)$/.test(e.code)) return true;
    // 08: connection exception; 57P01-57P03: admin/crash shutdown, cannot connect now; 53300 too many connections
    if (/^(08...|57P0[1-3]|53300)$/.test(e.code)) return true;
  }
  return /Connection terminated|connection.*(closed|ended)|terminating connection/i.test(e.message ?? '');
}

/**
 * What the driver (`pg`) says when the server asks for a password (SCRAM) and it has none, or an
 * empty one: it never reaches the server, so there is no SQLSTATE to match.
 */
const NO_PASSWORD = /^SASL: SCRAM-SERVER-FIRST-MESSAGE: client password must be a (non-empty )?string/;

/**
 * Where pgferry takes a password from: the URL, else `PGPASSWORD`, else the password file (read by
 * `pg` through `pgpass`, which, like libpq, ignores a file readable by group or others).
 */
export const NO_PASSWORD_MESSAGE =
  'the server asks for a password and none was given; put it in the URL (postgresql://user:password@host/db, special characters percent-encoded), in PGPASSWORD, or in the password file ~/.pgpass (or the file PGPASSFILE names, mode 0600)';

/**
 * Records on a server error the table(s) its statement wrote to, for {@link describeError}: a data
 * error (22001 value too long...) names none. Kept apart from the message, which classification
 * ({@link isConnectionError}) reads.
 */
export function withTables<T>(err: T, tables: string[]): T {
  if (err instanceof Error && tables.length > 0) (err as { pgferryTables?: string[] }).pgferryTables = [...new Set(tables)];
  return err;
}

/** One line describing an error for a human, password-free. */
export function describeError(err: unknown): string {
  if (err instanceof Error && NO_PASSWORD.test(err.message)) return NO_PASSWORD_MESSAGE;
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const prefix = typeof code === 'string' && !(err instanceof PgferryError) ? `${code}: ` : '';
    const tables = (err as { pgferryTables?: string[] }).pgferryTables;
    const where = tables ? (tables.length === 1 ? ` (table ${tables[0]})` : ` (one of tables ${tables.join(', ')})`) : '';
    return redact(prefix + err.message.split('\n')[0] + where);
  }
  return redact(String(err));
}
