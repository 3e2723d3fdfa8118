import type pg from 'pg';
import { qualified } from '../pg/connection.js';
import type { SourceTable } from '../source/catalog.js';

/**
 * Each column's type with domains resolved to their base type, and whether that type's binary
 * form means the same on any server: a built-in type (OID below 10000, the same on every server),
 * with binary send and receive functions (an array's element too), and not an OID alias
 * (`regclass`, `regtype`, ...: binary sends the OID, which differs between servers, text sends the
 * name). User-defined and extension types, enums, composites and arrays of them are not: their
 * OIDs differ between servers and binary arrays and records embed them.
 */
const COLUMN_TYPES_SQL = `
WITH RECURSIVE base(relid, name, typ) AS (
  SELECT a.attrelid, a.attname::text, a.atttypid FROM pg_attribute a
   WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT b.relid, b.name, t.typbasetype FROM base b JOIN pg_type t ON t.oid = b.typ WHERE t.typtype = 'd'
)
SELECT b.relid::int8::int AS relid, b.name, b.typ::int8::int AS typ,
       (b.typ < 10000 AND t.typsend <> 0 AND t.typreceive <> 0 AND t.typname !~ '^_?reg'
        AND (e.oid IS NULL OR (e.typsend <> 0 AND e.typreceive <> 0 AND e.typname !~ '^reg'))) AS portable
  FROM base b JOIN pg_type t ON t.oid = b.typ LEFT JOIN pg_type e ON e.oid = t.typelem
 WHERE t.typtype <> 'd'`;

type ColumnTypes = Map<number, Map<string, { typ: number; portable: boolean }>>;

async function columnTypes(client: pg.Client, relids: number[]): Promise<ColumnTypes> {
  const { rows } = await client.query<{ relid: number; name: string; typ: number; portable: boolean }>(COLUMN_TYPES_SQL, [relids]);
  const out: ColumnTypes = new Map();
  for (const r of rows) {
    const cols = out.get(Number(r.relid)) ?? new Map();
    cols.set(r.name, { typ: Number(r.typ), portable: r.portable });
    out.set(Number(r.relid), cols);
  }
  return out;
}

/**
 * The tables (by source OID) whose copy can use COPY's binary format, which spares both servers
 * the text output and input functions: every copied column has a portable type (see
 * {@link COLUMN_TYPES_SQL}) and the same one, after domains, on both sides, and the target is not an
 * older major version than the source (a newer server reads every older binary form). Any other
 * table is copied in text, which is always byte-exact.
 */
export async function binaryCopyTables(source: pg.Client, target: pg.Client, tables: SourceTable[]): Promise<Set<number>> {
  const version = async (c: pg.Client): Promise<number> => Math.floor(Number((await c.query<{ v: string }>('SELECT current_setting($1) AS v', ['server_version_num'])).rows[0]!.v) / 10000);
  if ((await version(target)) < (await version(source))) return new Set();
  const { rows } = await target.query<{ oid: number | null }>('SELECT to_regclass(n)::oid::int8::int AS oid FROM unnest($1::text[]) WITH ORDINALITY AS x(n, i) ORDER BY i', [tables.map(qualified)]);
  const targetOids = rows.map((r) => (r.oid === null ? null : Number(r.oid)));
  const [sourceTypes, targetTypes] = await Promise.all([columnTypes(source, tables.map((t) => t.oid)), columnTypes(target, targetOids.filter((o): o is number => o !== null))]);
  const binary = new Set<number>();
  tables.forEach((table, i) => {
    const oid = targetOids[i];
    const src = sourceTypes.get(table.oid);
    const dst = oid === null || oid === undefined ? undefined : targetTypes.get(oid);
    if (!src || !dst) return;
    const same = table.columns.every((c) => {
      const [s, d] = [src.get(c), dst.get(c)];
      return s !== undefined && d !== undefined && s.portable && d.portable && s.typ === d.typ;
    });
    if (same) binary.add(table.oid);
  });
  return binary;
}
