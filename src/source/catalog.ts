import type pg from 'pg';
import type { TableName } from '../pg/connection.js';

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
 */
export async function listSourceTables(client: pg.Client, selected: TableName[]): Promise<{ tables: SourceTable[]; missing: TableName[] }> {
  const { rows } = await client.query<{ oid: number; schema: string; name: string; relkind: 'r' | 'p'; ispartition: boolean; columns: string[] }>(
    `SELECT c.oid::int8::int AS oid, n.nspname AS schema, c.relname AS name, c.relkind, c.relispartition AS ispartition,
            ARRAY(SELECT a.attname::text FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
                  ORDER BY a.attnum) AS columns
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND ${SYSTEM_SCHEMAS} AND NOT c.relpersistence = 't'
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
      ORDER BY n.nspname, c.relname`,
  );
  const all = rows.map((r) => ({ oid: Number(r.oid), schema: r.schema, name: r.name, relkind: r.relkind, columns: r.columns, ispartition: r.ispartition }));
  if (selected.length === 0) {
    return { tables: all.filter((t) => !t.ispartition).map(({ ispartition: _, ...t }) => t), missing: [] };
  }
  const tables: SourceTable[] = [];
  const missing: TableName[] = [];
  for (const want of selected) {
    const found = all.find((t) => t.schema === want.schema && t.name === want.name);
    if (!found) missing.push(want);
    else if (!tables.some((t) => t.oid === found.oid)) {
      const { ispartition: _, ...t } = found;
      tables.push(t);
    }
  }
  return { tables, missing };
}
