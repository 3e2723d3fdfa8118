/**
 * Pure: the DDL messages pgferry's event trigger writes into the source's WAL
 * (`pg_logical_emit_message(true, 'pgferry.ddl', <json>)`, see `capture.ts`), and what the applier
 * runs on the target for each. No I/O.
 */

import { PgferryError, ErrorCodes } from '../errors.js';

/** The logical decoding message prefix of captured DDL. */
export const DDL_MESSAGE_PREFIX = 'pgferry.ddl';

/** One command of the fired statement, as `pg_event_trigger_ddl_commands()` / `_dropped_objects()` name it. */
export interface DdlCommand {
  /** Command tag of this command (`ALTER TABLE`, `CREATE INDEX`, ...). */
  tag: string;
  /** `object_type`: `table`, `table column`, `index`, `type`, ... */
  type: string;
  /** `object_identity`: schema-qualified and quoted. */
  identity: string;
  /** `pg_get_indexdef` of a created index (schema-qualified: no search_path needed). */
  indexdef?: string | null;
  /** Why the source could not publish this object (a new table without a key). */
  unsupported?: string | null;
}

/** A table's columns on the source right after the statement: name, type (`schema.name` unquoted: quoting rules differ between major versions, e.g. json is a keyword from 16), typmod. */
export interface TableShape {
  identity: string;
  columns: { name: string; type: string; typmod: number }[];
}

/** An enum's labels on the source right after the statement. */
export interface EnumShape {
  identity: string;
  labels: string[];
}

/** The payload of one captured statement (one firing of the event trigger). */
export interface DdlPayload {
  publication: string;
  /** `TG_TAG`: the command tag of the top-level statement. */
  tag: string;
  /** `current_query()`: the client's whole query string, which may hold more than the statement. */
  query: string;
  /** `current_schemas(false)` of the session that ran it: names resolve against exactly these. */
  searchPath: string[];
  commands: DdlCommand[];
  tables: TableShape[];
  enums: EnumShape[];
  /** Tables dropped by `DROP TABLE` (identities). */
  droppedTables: string[];
}

/** What to do on the target for one payload. */
export type DdlPlan =
  | { kind: 'execute'; statements: string[] }
  | { kind: 'unsupported'; reason: string };

/** Statements whose text is replayed (the one statement of `current_query()` with this tag). */
const REPLAYED = new Set(['ALTER TABLE', 'CREATE TABLE', 'ALTER INDEX']);

/**
 * Decodes a `pgferry.ddl` message; null when it belongs to another publication (another pgferry
 * migration from the same database). A malformed one is a protocol error: never skipped.
 */
export function decodeDdlMessage(content: Buffer, publication: string): DdlPayload | null {
  let p: Partial<DdlPayload>;
  try {
    p = JSON.parse(content.toString('utf8')) as Partial<DdlPayload>;
  } catch {
    p = {};
  }
  if (typeof p.tag !== 'string' || typeof p.query !== 'string' || !Array.isArray(p.commands)) {
    throw new PgferryError(ErrorCodes.PROTOCOL, `source: malformed ${DDL_MESSAGE_PREFIX} message (${content.toString('utf8').slice(0, 100)})`);
  }
  if (p.publication !== publication) return null;
  return {
    publication: p.publication ?? '',
    tag: p.tag,
    query: p.query,
    searchPath: p.searchPath ?? [],
    commands: p.commands,
    tables: p.tables ?? [],
    enums: p.enums ?? [],
    droppedTables: p.droppedTables ?? [],
  };
}

/**
 * Decides how a captured statement reaches the target. CREATE INDEX is rebuilt from
 * `pg_get_indexdef` (`IF NOT EXISTS`), DROP INDEX from the dropped object's identity; ALTER TABLE,
 * CREATE TABLE and ALTER INDEX replay the one statement of `current_query()` that has the fired
 * tag (others in the same query string, such as BEGIN or INSERT, are left out: their effects
 * travel in the stream). Anything else, or a query where that statement cannot be singled out, is
 * unsupported: the applier stops unless the target already matches the source's result.
 */
export function planDdl(p: DdlPayload): DdlPlan {
  const refused = p.commands.find((c) => c.unsupported);
  if (refused) return { kind: 'unsupported', reason: `${refused.identity}: ${refused.unsupported}` };
  if (p.tag === 'CREATE INDEX') {
    const defs = p.commands.flatMap((c) => (c.indexdef ? [c.indexdef.replace(/^CREATE (UNIQUE )?INDEX /, 'CREATE $1INDEX IF NOT EXISTS ')] : []));
    return defs.length > 0 ? { kind: 'execute', statements: defs } : { kind: 'unsupported', reason: 'CREATE INDEX without an index definition' };
  }
  if (p.tag === 'DROP INDEX') return { kind: 'execute', statements: p.commands.map((c) => `DROP INDEX IF EXISTS ${c.identity}`) };
  if (!REPLAYED.has(p.tag)) return { kind: 'unsupported', reason: `${p.tag} is not applied by pgferry` };
  const matching = splitStatements(p.query).filter((s) => leadingWords(s, 2) === p.tag);
  if (matching.length !== 1) {
    return { kind: 'unsupported', reason: matching.length === 0 ? `the ${p.tag} ran inside another statement (a function, DO block or procedure)` : `the query string holds ${matching.length} ${p.tag} statements` };
  }
  return { kind: 'execute', statements: matching };
}

/** The first `n` words of a statement, upper-cased, after comments: `ALTER TABLE`. */
export function leadingWords(statement: string, n: number): string {
  return statement.replace(/^(\s|--[^\n]*\n?|\/\*[\s\S]*?\*\/)+/, '').split(/\s+/, n).join(' ').toUpperCase();
}

/**
 * Splits an SQL query string into its statements at top-level semicolons, honouring quoted
 * identifiers, string literals (E'' escapes), dollar quoting and comments (nested block comments).
 * Empty statements are dropped. Statements keep their text exactly.
 */
export function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let start = 0;
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const ch = sql[i]!;
    if (ch === ';') {
      out.push(sql.slice(start, i));
      start = ++i;
    } else if (ch === "'" || ch === '"') {
      const escapes = ch === "'" && /[eE]/.test(sql[i - 1] ?? '') && !/[\w$]/.test(sql[i - 2] ?? '');
      i++;
      while (i < n) {
        if (escapes && sql[i] === '\\') i += 2;
        else if (sql[i] === ch && sql[i + 1] === ch) i += 2;
        else if (sql[i] === ch) break;
        else i++;
      }
      i++;
    } else if (ch === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? n : end + 1;
    } else if (ch === '/' && sql[i + 1] === '*') {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') (depth++, (i += 2));
        else if (sql[i] === '*' && sql[i + 1] === '/') (depth--, (i += 2));
        else i++;
      }
    } else if (ch === '$' && !/[\w$]/.test(sql[i - 1] ?? '')) {
      const tag = /^\$([A-Za-z_][\w]*)?\$/.exec(sql.slice(i))?.[0];
      if (tag) {
        const end = sql.indexOf(tag, i + tag.length);
        i = end < 0 ? n : end + tag.length;
      } else i++;
    } else i++;
  }
  out.push(sql.slice(start));
  return out.map((s) => s.trim()).filter((s) => s.replace(/--[^\n]*|\/\*[\s\S]*?\*\//g, '').trim() !== '');
}
