import { ident, qualified, type TableName } from '../pg/connection.js';

/** A table as verify reads it: every column in source order, and the key that orders the chunks. */
export interface VerifyTable extends TableName {
  /** `r` ordinary (read with ONLY, as the copy does), `p` partitioned (read through its root). */
  relkind: 'r' | 'p';
  columns: string[];
  /** Primary key or replica identity index columns; empty for a table without a key. */
  key: { name: string; type: string; collatable: boolean }[];
}

/** A chunk's key range: (lower, upper], each bound the key's columns in text form, null for open. */
export interface KeyRange {
  lower: string[] | null;
  upper: string[] | null;
}

function from(t: VerifyTable): string {
  return `${t.relkind === 'r' ? 'ONLY ' : ''}${qualified(t)} t`;
}

/** The key as an ordering / row-comparison expression; text keys compare bytewise (COLLATE "C") on both servers. */
function keyColumns(t: VerifyTable): string[] {
  return t.key.map((k) => `t.${ident(k.name)}${k.collatable ? ' COLLATE "C"' : ''}`);
}

/** The row's text form: the same on both servers for the same values (fixed session settings). */
export function rowText(t: VerifyTable): string {
  return `ROW(${t.columns.map((c) => `t.${ident(c)}`).join(', ')})::text`;
}

/** A WHERE clause for a range, with parameters starting at $1. */
export function rangePredicate(t: VerifyTable, range: KeyRange): { sql: string; params: string[] } {
  const keys = `(${keyColumns(t).join(', ')})`;
  const params: string[] = [];
  const bound = (values: string[]): string =>
    `(${values.map((v, i) => { params.push(v); const k = t.key[i]!; return `$${params.length}::${k.type}${k.collatable ? ' COLLATE "C"' : ''}`; }).join(', ')})`;
  const parts: string[] = [];
  if (range.lower) parts.push(`${keys} > ${bound(range.lower)}`);
  if (range.upper) parts.push(`${keys} <= ${bound(range.upper)}`);
  return { sql: parts.length > 0 ? parts.join(' AND ') : 'true', params };
}

/** The key of the row `size` rows past `lower`: the inclusive upper bound of the next chunk (no row: last chunk). */
export function nextBoundaryQuery(t: VerifyTable, lower: string[] | null, size: number): { sql: string; params: string[] } {
  const where = rangePredicate(t, { lower, upper: null });
  return {
    sql: `SELECT ARRAY[${t.key.map((k) => `t.${ident(k.name)}::text`).join(', ')}] AS key FROM ${from(t)} WHERE ${where.sql} ORDER BY ${keyColumns(t).join(', ')} LIMIT 1 OFFSET ${size - 1}`,
    params: where.params,
  };
}

/**
 * Row count and md5 of the rows' text forms in key order for one range, plus the WAL insert position
 * after the read (every commit the read saw is before it).
 */
export function chunkHashQuery(t: VerifyTable, range: KeyRange): { sql: string; params: string[] } {
  const where = rangePredicate(t, range);
  const order = t.key.length > 0 ? keyColumns(t).join(', ') : `${rowText(t)} COLLATE "C"`;
  return {
    sql: `SELECT count(*)::text AS n, md5(coalesce(string_agg(${rowText(t)}, E'\\n' ORDER BY ${order}), '')) AS hash,
                 pg_current_wal_insert_lsn()::text AS lsn
            FROM ${from(t)} WHERE ${where.sql}`,
    params: where.params,
  };
}

/** Each row's key (text form) and the md5 of its text form, for locating differences inside a range. */
export function rowHashesQuery(t: VerifyTable, range: KeyRange): { sql: string; params: string[] } {
  const where = rangePredicate(t, range);
  const key = t.key.length > 0 ? `ARRAY[${t.key.map((k) => `t.${ident(k.name)}::text`).join(', ')}]` : `ARRAY[${rowText(t)}]`;
  return { sql: `SELECT ${key} AS key, md5(${rowText(t)}) AS hash FROM ${from(t)} WHERE ${where.sql}`, params: where.params };
}

/** Formats a key for humans: `(id)=(42)` or `("Order Id", "Line No")=(7, 2)`. */
export function describeKey(t: VerifyTable, key: string[]): string {
  if (t.key.length === 0) return `row ${key[0] ?? ''}`;
  return `(${t.key.map((k) => ident(k.name)).join(', ')})=(${key.join(', ')})`;
}
