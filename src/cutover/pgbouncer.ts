import { readFile, writeFile } from 'node:fs/promises';
import pg from 'pg';
import { ErrorCodes, PgferryError, describeError } from '../errors.js';

/**
 * PgBouncer's admin console (`SHOW`, `PAUSE`, `RESUME`, `RELOAD`): simple-query only, so every
 * command goes without parameters. One short-lived connection per command: a `PAUSE` that waits for
 * transactions to finish must not block a `RESUME` sent to undo it.
 */
export class PgBouncerAdmin {
  constructor(
    private readonly url: string,
    private readonly database: string,
  ) {}

  private async command(sql: string, timeoutMs: number): Promise<void> {
    const client = new pg.Client({ connectionString: this.url, query_timeout: timeoutMs, connectionTimeoutMillis: timeoutMs });
    client.on('error', () => {});
    try {
      await client.connect();
    } catch (err) {
      throw new PgferryError(ErrorCodes.CUTOVER, `pgbouncer: cannot connect to its admin console (${describeError(err)}); check pgbouncerAdmin (a user in admin_users, database pgbouncer)`, { cause: err });
    }
    try {
      await client.query(sql);
    } catch (err) {
      throw new PgferryError(ErrorCodes.CUTOVER, `pgbouncer: ${sql} failed (${describeError(err)}); check that database entry ${this.database} exists and that no long transaction holds a server connection`, { cause: err });
    } finally {
      await client.end().catch(() => {});
    }
  }

  /** Holds new queries of the database entry and waits until its server connections are released. */
  pause(timeoutMs: number): Promise<void> {
    return this.command(`PAUSE ${this.database}`, timeoutMs);
  }

  resume(timeoutMs: number): Promise<void> {
    return this.command(`RESUME ${this.database}`, timeoutMs);
  }

  reload(timeoutMs: number): Promise<void> {
    return this.command('RELOAD', timeoutMs);
  }
}

/** Connection details of the new database entry. */
export interface EntryTarget {
  host: string;
  port: number;
  database: string;
}

/**
 * Rewrites `name = ...` in the `[databases]` section of a PgBouncer ini file so it points at
 * `target` (host, port, dbname replaced; other keys such as user or pool_size kept). Returns the
 * file's previous text, to restore it if the switch is undone.
 */
export async function rewriteDatabaseEntry(path: string, name: string, target: EntryTarget): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new PgferryError(ErrorCodes.CUTOVER, `pgbouncer: cannot read ${path} (${describeError(err)}); check pgbouncerConfig and that pgferry may write it`, { cause: err });
  }
  const lines = text.split('\n');
  let section = '';
  let found = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const header = /^\s*\[([^\]]+)\]\s*$/.exec(line);
    if (header) {
      section = header[1]!.trim().toLowerCase();
      continue;
    }
    if (section !== 'databases') continue;
    const m = /^(\s*)("(?:[^"]|"")+"|[^=\s]+)(\s*=\s*)(.*)$/.exec(line);
    if (!m) continue;
    const key = m[2]!.startsWith('"') ? m[2]!.slice(1, -1).replace(/""/g, '"') : m[2]!;
    if (key !== name) continue;
    const kept = parseConnstr(m[4]!).filter(([k]) => !['host', 'port', 'dbname'].includes(k.toLowerCase()));
    const entry: [string, string][] = [['host', target.host], ['port', String(target.port)], ['dbname', target.database], ...kept];
    lines[i] = `${m[1]}${m[2]}${m[3]}${entry.map(([k, v]) => `${k}=${quote(v)}`).join(' ')}`;
    found = true;
  }
  if (!found) throw new PgferryError(ErrorCodes.CUTOVER, `pgbouncer: ${path} has no entry ${name} in [databases]; check pgbouncerDatabase`);
  try {
    await writeFile(path, lines.join('\n'));
  } catch (err) {
    throw new PgferryError(ErrorCodes.CUTOVER, `pgbouncer: cannot write ${path} (${describeError(err)}); let pgferry's user write it`, { cause: err });
  }
  return text;
}

/** Puts back a file saved by {@link rewriteDatabaseEntry}. */
export async function restoreFile(path: string, text: string): Promise<void> {
  await writeFile(path, text);
}

/** `key=value key='quoted value'` pairs of a libpq-style connection string as PgBouncer writes them. */
function parseConnstr(text: string): [string, string][] {
  const out: [string, string][] = [];
  const re = /\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('((?:[^'\\]|\\.|'')*)'|\S*)/g;
  for (const m of text.matchAll(re)) out.push([m[1]!, m[3] !== undefined ? m[3].replace(/''/g, "'").replace(/\\(.)/g, '$1') : m[2]!]);
  return out;
}

function quote(v: string): string {
  return /^[^\s'\\]+$/.test(v) ? v : `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}
