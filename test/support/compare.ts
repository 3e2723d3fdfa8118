import type pg from 'pg';

/**
 * One fixed session on both servers for comparisons: output never depends on either server's (or
 * database's) own TimeZone, DateStyle, IntervalStyle, extra_float_digits, bytea_output, lc_monetary.
 */
export const FIXED_SESSION = `SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = postgres; SET extra_float_digits = 3;
  SET bytea_output = hex; SET lc_monetary = 'C'; SET xmloption = content; SET search_path = public`;

interface ColumnInfo {
  name: string;
  /** format_type of the column. */
  type: string;
  /**
   * The type's send function (qualified), when its binary form holds no type OIDs (OIDs of
   * user-defined types differ between the servers: arrays and composites of them are left out).
   */
  send: string | null;
}

async function columnsOf(client: pg.Client, table: string): Promise<ColumnInfo[]> {
  const { rows } = await client.query<{ name: string; type: string; send: string; builtin: boolean }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
            format('%I.%I', pn.nspname, p.proname) AS send,
            (p.proname NOT IN ('array_send', 'record_send') OR (a.atttypid < 16384 AND (ty.typelem = 0 OR ty.typelem < 16384) AND ty.typtype <> 'c')) AS builtin
       FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
       JOIN pg_proc p ON p.oid = ty.typsend JOIN pg_namespace pn ON pn.oid = p.pronamespace
      WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [table],
  );
  return rows.map((r) => ({ name: r.name, type: r.type, send: r.builtin ? r.send : null }));
}

function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** One table's rows as seen through the fixed session: per column the output text, md5(col::text), md5 of the binary send form. */
interface TableRows {
  columns: ColumnInfo[];
  /** Each row: [column texts..., md5s..., binary md5s...] as one JSON string (the multiset element). */
  rows: string[];
  /** The same rows decoded, keyed by the row string. */
  detail: Map<string, (string | null)[]>;
}

async function readTable(client: pg.Client, table: string): Promise<TableRows> {
  await client.query(FIXED_SESSION);
  const columns = await columnsOf(client, table);
  // Per row: every column's output text, then every md5(col::text), then every binary md5.
  const col = (c: ColumnInfo): string => `x.${ident(c.name)}`;
  const exprs = [
    // format('%s') calls the type's output function (col::text would strip char(n) padding).
    ...columns.map((c, i) => `CASE WHEN ${col(c)} IS NULL THEN NULL ELSE format('%s', ${col(c)}) END AS t${i}`),
    ...columns.map((c, i) => `md5(${col(c)}::text) AS m${i}`),
    ...columns.map((c, i) => (c.send ? `md5(${c.send}(${col(c)})) AS b${i}` : `NULL::text AS b${i}`)),
  ];
  const { rows } = await client.query({ text: `SELECT ${exprs.join(', ')} FROM ${table} x`, rowMode: 'array' });
  const out: string[] = [];
  const detail = new Map<string, (string | null)[]>();
  for (const r of rows as (string | null)[][]) {
    const s = JSON.stringify(r);
    out.push(s);
    detail.set(s, r);
  }
  out.sort();
  return { columns, rows: out, detail };
}

function clip(v: string | null | undefined): string {
  if (v === null || v === undefined) return 'NULL';
  return v.length > 160 ? `${JSON.stringify(v.slice(0, 160))}... (${v.length} chars)` : JSON.stringify(v);
}

/**
 * Compares tables on both servers as multisets of rows, value by value: each column's output text
 * under {@link FIXED_SESSION}, `md5(col::text)`, and the md5 of its binary send form (for types
 * whose binary form is server-independent). Returns human-readable differences (empty: identical).
 * `keys` names, per table, the columns that identify a row, to pair up differing rows column by column.
 */
export async function diffTables(source: pg.Client, target: pg.Client, tables: string[], keys: Record<string, string[]> = {}, limit = 8): Promise<string[]> {
  const problems: string[] = [];
  for (const table of tables) {
    const [s, t] = await Promise.all([readTable(source, table), readTable(target, table)]);
    const sCols = s.columns.map((c) => `${c.name} ${c.type}`).join(', ');
    const tCols = t.columns.map((c) => `${c.name} ${c.type}`).join(', ');
    if (sCols !== tCols) {
      problems.push(`${table}: columns differ\n  source: ${sCols}\n  target: ${tCols}`);
      continue;
    }
    const counts = new Map<string, number>();
    for (const r of s.rows) counts.set(r, (counts.get(r) ?? 0) + 1);
    for (const r of t.rows) counts.set(r, (counts.get(r) ?? 0) - 1);
    const onlySource = [...counts].filter(([, n]) => n > 0).map(([r]) => s.detail.get(r)!);
    const onlyTarget = [...counts].filter(([, n]) => n < 0).map(([r]) => t.detail.get(r)!);
    if (onlySource.length === 0 && onlyTarget.length === 0) continue;
    problems.push(`${table}: ${s.rows.length} rows on the source, ${t.rows.length} on the target; ${onlySource.length} source row(s) and ${onlyTarget.length} target row(s) without an identical counterpart`);
    const n = s.columns.length;
    const keyIdx = (keys[table] ?? []).map((k) => s.columns.findIndex((c) => c.name === k));
    const keyOf = (r: (string | null)[]): string => JSON.stringify(keyIdx.map((i) => r[i]));
    const targetByKey = new Map(onlyTarget.map((r) => [keyOf(r), r]));
    let shown = 0;
    for (const sr of onlySource) {
      if (shown >= limit) break;
      const tr = keyIdx.length > 0 ? targetByKey.get(keyOf(sr)) : undefined;
      if (!tr) {
        problems.push(`  only on the source: ${keyIdx.length > 0 ? `key ${keyOf(sr)}` : clip(JSON.stringify(sr.slice(0, n)))}`);
        shown++;
        continue;
      }
      targetByKey.delete(keyOf(sr));
      for (let i = 0; i < n; i++) {
        const what = sr[i] !== tr[i] ? 'text' : sr[n + i] !== tr[n + i] ? 'md5(text)' : sr[2 * n + i] !== tr[2 * n + i] ? 'binary send form' : null;
        if (!what) continue;
        problems.push(`  key ${keyOf(sr)} column ${s.columns[i]!.name} (${s.columns[i]!.type}) differs in ${what}: source ${clip(sr[i])} target ${clip(tr[i])}`);
      }
      shown++;
    }
    for (const tr of keyIdx.length > 0 ? targetByKey.values() : onlyTarget) {
      if (shown >= limit) break;
      problems.push(`  only on the target: ${keyIdx.length > 0 ? `key ${keyOf(tr)}` : clip(JSON.stringify(tr.slice(0, n)))}`);
      shown++;
    }
  }
  return problems;
}

/** Row count of a table (sanity checks that comparisons are not vacuous). */
export async function rowCount(client: pg.Client, table: string): Promise<number> {
  const { rows: [r] } = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
  return r!.n;
}
