import { ident, qualified, type TableName } from '../pg/connection.js';

/** A source relation mapped onto its target table: what statement building needs. */
export interface RelationPlan {
  table: TableName;
  /** `schema.name`, as in metrics and status. */
  key: string;
  /** Every column index, in order (a tuple with every value present). */
  all: number[];
  /** Every column index but the key's (empty for REPLICA IDENTITY FULL: no key). */
  nonKey: number[];
  /** The target is an ordinary table: statements say ONLY so inheritance children are never touched. */
  only: boolean;
  /** Replicated columns in the order of the pgoutput tuple. */
  columns: string[];
  /** Target type of each column (`format_type`), same order: used to compare values as the target sees them. */
  types: string[];
  /**
   * Each column's type by its catalog name without a type modifier (`"pg_catalog"."bpchar"`), for
   * casts that must not truncate or round: the column's own modifier applies on assignment, as it
   * does for a parameter.
   */
  baseTypes: string[];
  /** Index (into `columns`) of each replica identity key column; empty for REPLICA IDENTITY FULL. */
  keyIndexes: number[];
  /**
   * Indexes of GENERATED ALWAYS identity columns on the target: inserts must say OVERRIDING SYSTEM
   * VALUE, and UPDATE cannot assign them (they are immutable at the source too, short of SET DEFAULT).
   */
  alwaysIdentity: number[];
}

/** An SQL text with the tuple positions its $n parameters take their values from. */
export interface Statement {
  sql: string;
  params: number[];
}

/** `INSERT` of the columns present in the tuple. */
export function insertStatement(plan: RelationPlan, present: number[]): Statement {
  const cols = present.map((i) => ident(plan.columns[i]!)).join(', ');
  const values = present.map((_, n) => `$${n + 1}`).join(', ');
  const overriding = plan.alwaysIdentity.length > 0 ? ' OVERRIDING SYSTEM VALUE' : '';
  return { sql: `INSERT INTO ${qualified(plan.table)} (${cols})${overriding} VALUES (${values})`, params: present };
}

/**
 * One multi-row `INSERT` of the present columns with the values inlined as untyped literals: in an
 * INSERT's VALUES list each one is coerced to its target column by the column type's input
 * function, exactly as a parameter would be. `rows` holds the present columns' values per row.
 */
export function insertRowsStatement(plan: RelationPlan, present: number[], rows: (string | null)[][]): string {
  const cols = present.map((i) => ident(plan.columns[i]!)).join(', ');
  const overriding = plan.alwaysIdentity.length > 0 ? ' OVERRIDING SYSTEM VALUE' : '';
  return `INSERT INTO ${qualified(plan.table)} (${cols})${overriding} VALUES ${rows.map((r) => `(${r.map(literal).join(', ')})`).join(', ')}`;
}

/** A value as an SQL string literal (`NULL` for null); needs `standard_conforming_strings = on`. */
function literal(v: string | null): string {
  return v === null ? 'NULL' : `'${v.replace(/'/g, "''")}'`;
}

function target(plan: RelationPlan): string {
  return `${plan.only ? 'ONLY ' : ''}${qualified(plan.table)}`;
}

/**
 * `UPDATE` setting the `set` columns of the new tuple, on the row matched by `match`:
 * by key columns (`=`, index-backed), or when `full` on every listed old column compared through
 * the target's text form (any type, equality operator or not), touching exactly one row.
 * `guard` columns are not assigned but must already hold the new tuple's value: if they do not,
 * no row matches and the caller reports a divergence instead of losing the change.
 */
export function updateStatement(plan: RelationPlan, set: number[], match: number[], full: boolean, guard: number[] = []): Statement {
  const assignments = set.map((i, n) => `${ident(plan.columns[i]!)} = $${n + 1}`).join(', ');
  const offset = set.length + match.length;
  const guards = guard.map((i, n) => ` AND t.${ident(plan.columns[i]!)} = $${offset + n + 1}`).join('');
  return {
    sql: matching(plan, match, full, set.length, (where) => `UPDATE ${target(plan)} AS t SET ${assignments} ${where}${guards}`),
    params: [...set, ...match.map((i) => -1 - i), ...guard],
  };
}

/** Locks the row {@link updateStatement} would change, for an update that assigns nothing. */
export function matchStatement(plan: RelationPlan, match: number[], full: boolean, guard: number[] = []): Statement {
  const guards = guard.map((i, n) => ` AND t.${ident(plan.columns[i]!)} = $${match.length + n + 1}`).join('');
  return {
    sql: matching(plan, match, full, 0, (where) => `SELECT 1 FROM ${target(plan)} AS t ${where}${guards} FOR UPDATE`),
    params: [...match.map((i) => -1 - i), ...guard],
  };
}

/** `TRUNCATE` of the listed tables (ordinary tables ONLY, partitioned ones with their partitions). */
export function truncateStatement(plans: RelationPlan[], restartIdentity: boolean): string {
  return `TRUNCATE ${plans.map(target).join(', ')}${restartIdentity ? ' RESTART IDENTITY' : ''}`;
}

/** `DELETE` of exactly the row matched as in {@link updateStatement}. */
export function deleteStatement(plan: RelationPlan, match: number[], full: boolean): Statement {
  return { sql: matching(plan, match, full, 0, (where) => `DELETE FROM ${target(plan)} AS t ${where}`), params: match.map((i) => -1 - i) };
}

/**
 * `statement(where)` with the WHERE clause that matches the row (t): by key, or when `full` one
 * row among those equal to every listed old column. Duplicates are legal without a key:
 * tableoid + ctid pins one physical row, even across partitions. An unlocked one is taken first
 * (an identical row held by a large transaction's session does as well, and waiting for it could
 * deadlock through pgferry, which commits that session after this one); only when every match is
 * locked does it wait for one (a lock held elsewhere is not a divergence).
 */
function matching(plan: RelationPlan, match: number[], full: boolean, offset: number, statement: (where: string) => string): string {
  if (!full) {
    return statement('WHERE ' + match.map((i, n) => `t.${ident(plan.columns[i]!)} = $${offset + n + 1}`).join(' AND '));
  }
  const conditions = match.map((i, n) => `m.${ident(plan.columns[i]!)}::text IS NOT DISTINCT FROM ($${offset + n + 1}::${plan.types[i]})::text`);
  const cond = conditions.length > 0 ? conditions.join(' AND ') : 'true';
  const pick = (extra: string, lock: string): string => `SELECT m.tableoid, m.ctid FROM ${target(plan)} AS m WHERE ${cond}${extra} LIMIT 1 FOR UPDATE${lock}`;
  return (
    `WITH pgferry_free AS (${pick('', ' SKIP LOCKED')}), pgferry_any AS (${pick(' AND NOT EXISTS (SELECT FROM pgferry_free)', '')}) ` +
    statement('WHERE (t.tableoid, t.ctid) = (SELECT * FROM pgferry_free UNION ALL SELECT * FROM pgferry_any LIMIT 1)')
  );
}

/** `COPY ... FROM STDIN` (text format) of the present columns: many inserts in one round trip. */
export function copyInStatement(plan: RelationPlan, present: number[]): string {
  return `COPY ${qualified(plan.table)} (${present.map((i) => ident(plan.columns[i]!)).join(', ')}) FROM STDIN`;
}

const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };
const COPY_SPECIAL = /[\\\n\r\t]/;
const COPY_SPECIALS = /[\\\n\r\t]/g;

/**
 * One row in COPY's text format. Values are the source's own text form; escaping only protects the
 * delimiters, so the target's input functions receive exactly the same characters.
 */
export function copyTextLine(values: (string | null)[]): string {
  let line = '';
  for (let i = 0; i < values.length; i++) {
    const v = values[i] ?? null;
    if (i > 0) line += '\t';
    line += v === null ? '\\N' : COPY_SPECIAL.test(v) ? v.replace(COPY_SPECIALS, (c) => COPY_ESCAPES[c]!) : v;
  }
  return `${line}\n`;
}

/**
 * Replaces each `$n` of a built statement with its value as a string literal (`NULL` for null),
 * so many statements can travel in one simple-query round trip. The literal is untyped, so the
 * target resolves it exactly as it resolves an untyped parameter: the same input function gets
 * the same characters. Needs `standard_conforming_strings = on` (backslashes are not escapes).
 * Statement texts hold quoted identifiers and no string literals, so only `$n` outside double
 * quotes are placeholders.
 */
export function inlineParams(sql: string, values: (string | null)[]): string {
  let out = '';
  let quoted = false;
  for (let i = 0; i < sql.length; i++) {
    const ch = sql[i]!;
    if (ch === '"') quoted = !quoted; // a doubled "" toggles twice: still inside
    if (!quoted && ch === '$') {
      const m = /^\$(\d+)/.exec(sql.slice(i, i + 8));
      if (m) {
        const v = values[Number(m[1]) - 1];
        if (v === undefined) throw new RangeError(`no value for ${m[0]}`);
        out += literal(v);
        i += m[0].length - 1;
        continue;
      }
    }
    out += ch;
  }
  return out;
}

/**
 * One `UPDATE` of many rows of one table matched by key, each row setting the same columns: one
 * statement to parse and plan instead of one per row. Keys must be distinct within a batch (the
 * caller splits), so the row count proves that every row matched exactly once. `rows` holds, per
 * row, the key values then the set values, as text (or null). See {@link keyedRows}.
 */
export function updateByKeysStatement(plan: RelationPlan, set: number[], rows: (string | null)[][]): string {
  const cols = [...plan.keyIndexes, ...set];
  const assignments = set.map((i) => `${ident(plan.columns[i]!)} = v.${ident(plan.columns[i]!)}`).join(', ');
  return `UPDATE ${target(plan)} AS t SET ${assignments} FROM ${keyedRows(plan, cols, rows)} WHERE ${keyMatch(plan)}`;
}

/** One `DELETE` of many rows matched by distinct keys. */
export function deleteByKeysStatement(plan: RelationPlan, rows: (string | null)[][]): string {
  return `DELETE FROM ${target(plan)} AS t USING ${keyedRows(plan, plan.keyIndexes, rows)} WHERE ${keyMatch(plan)}`;
}

function keyMatch(plan: RelationPlan): string {
  return plan.keyIndexes.map((i) => `t.${ident(plan.columns[i]!)} = v.${ident(plan.columns[i]!)}`).join(' AND ');
}

/**
 * The rows as a relation `v` with the columns' names: one text array per column, zipped by
 * `unnest`, each element cast to its column's base type (no modifier: the column's own applies on
 * assignment). The server parses one long literal per column, far cheaper than a VALUES list of
 * as many typed literals as values, and a cast from text runs the type's input function, so it
 * receives exactly the source's characters, for every type (arrays too).
 */
function keyedRows(plan: RelationPlan, cols: number[], rows: (string | null)[][]): string {
  const casts = cols.map((i, n) => `u.c${n}::${plan.baseTypes[i]} AS ${ident(plan.columns[i]!)}`).join(', ');
  const arrays = cols.map((_, n) => columnArray(rows, n)).join(', ');
  return `(SELECT ${casts} FROM unnest(${arrays}) AS u (${cols.map((_, n) => `c${n}`).join(', ')})) AS v`;
}

/** Separates elements, and stands for NULL, in {@link columnArray}'s split form. */
const UNIT = '\x1f';
const NULL_MARK = '\x1e';

/**
 * Column `n` of `rows` as a `text[]` expression. Values are joined with a control character and
 * split by `string_to_array` (nothing to escape but the literal's quotes), unless a value holds
 * one of the two control characters (or the only value is empty, which would split into no
 * element): then as an array literal, every element quoted with `"` and `\` escaped.
 */
function columnArray(rows: (string | null)[][], n: number): string {
  const parts: string[] = new Array(rows.length);
  for (let r = 0; r < rows.length; r++) {
    const v = rows[r]![n] ?? null;
    if (v !== null && (v.includes(UNIT) || v.includes(NULL_MARK))) return `${literal(arrayLiteral(rows, n))}::text[]`;
    parts[r] = v ?? NULL_MARK;
  }
  const joined = parts.join(UNIT);
  if (joined === '') return `${literal(arrayLiteral(rows, n))}::text[]`;
  return `string_to_array(${literal(joined)}, E'\\x1f', E'\\x1e')`;
}

/** Column `n` of `rows` as an array's text form: elements quoted, `"` and `\` escaped, NULL bare. */
function arrayLiteral(rows: (string | null)[][], n: number): string {
  let out = '{';
  for (let r = 0; r < rows.length; r++) {
    const v = rows[r]![n] ?? null;
    if (r > 0) out += ',';
    out += v === null ? 'NULL' : `"${v.replace(/["\\]/g, '\\$&')}"`;
  }
  return `${out}}`;
}
