import type pg from 'pg';
import { PreflightError } from '../errors.js';
import { tableKey, type TableName } from '../pg/connection.js';

/** A table pgferry migrates, as the source catalog describes it. */
export interface SourceTable extends TableName {
  oid: number;
  /** 'r' ordinary, 'p' partitioned (published and copied through its root). */
  relkind: 'r' | 'p';
  /** Columns that replicate, in attribute order: not dropped, not generated. */
  columns: string[];
}

/** Schemas that never hold user data pgferry migrates. */
const SYSTEM_SCHEMAS = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'`;

/**
 * Lists the tables to migrate: the given ones, or every ordinary and partitioned root table of the
 * database outside system schemas and extensions. Partitions are never listed on their own: they
 * travel through their root. Missing names are returned separately so the caller can name them.
 *
 * Throws a {@link PreflightError} when the given ones include a partition (at any depth) together
 * with a partitioned table above it: the root's copy and publication already include the
 * partition, so its rows would be copied and streamed twice. (An inheritance child selected with
 * its parent is not such a case: an ordinary table is copied and published `ONLY`.)
 */
export async function listSourceTables(client: pg.Client, selected: TableName[]): Promise<{ tables: SourceTable[]; missing: TableName[] }> {
  const { rows } = await client.query<{ oid: number; schema: string; name: string; relkind: 'r' | 'p'; ispartition: boolean; ancestors: number[]; columns: string[] }>(
    `SELECT c.oid::int8::int AS oid, n.nspname AS schema, c.relname AS name, c.relkind, c.relispartition AS ispartition,
            CASE WHEN c.relispartition
                 THEN ARRAY(SELECT a.relid::int8::int FROM pg_partition_ancestors(c.oid) a WHERE a.relid <> c.oid)
                 ELSE '{}' END AS ancestors,
            ARRAY(SELECT a.attname::text FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
                  ORDER BY a.attnum) AS columns
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND ${SYSTEM_SCHEMAS} AND NOT c.relpersistence = 't'
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
      ORDER BY n.nspname, c.relname`,
  );
  const all = rows.map((r) => ({ oid: Number(r.oid), schema: r.schema, name: r.name, relkind: r.relkind, columns: r.columns, ispartition: r.ispartition, ancestors: r.ancestors.map(Number) }));
  if (selected.length === 0) {
    return { tables: all.filter((t) => !t.ispartition).map(({ ispartition: _, ancestors: __, ...t }) => t), missing: [] };
  }
  const tables: SourceTable[] = [];
  const missing: TableName[] = [];
  const overlaps: string[] = [];
  for (const want of selected) {
    const found = all.find((t) => t.schema === want.schema && t.name === want.name);
    if (!found) missing.push(want);
    else if (!tables.some((t) => t.oid === found.oid)) {
      const { ispartition: _, ancestors: __, ...t } = found;
      tables.push(t);
    }
  }
  for (const t of all) {
    const above = t.ancestors.map((oid) => tables.find((s) => s.oid === oid)).filter((s) => s !== undefined);
    const root = above.at(-1); // ancestors run from the direct parent up to the root
    if (root && tables.some((s) => s.oid === t.oid)) {
      overlaps.push(`source: --tables selects both ${tableKey(root)} and its partition ${tableKey(t)}, whose rows ${tableKey(root)} already includes (they would be copied and streamed twice); leave ${tableKey(t)} out of --tables`);
    }
  }
  if (overlaps.length > 0) throw new PreflightError(overlaps.join('\n'));
  return { tables, missing };
}
