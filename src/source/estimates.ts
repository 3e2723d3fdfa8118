import type pg from 'pg';
import { qualified, tableKey } from '../pg/connection.js';
import type { SourceTable } from './catalog.js';

/** Below this size an unanalyzed table is counted exactly; above it, it has no estimate. */
const COUNT_BELOW_BYTES = 64 * 1024 * 1024;

/**
 * Estimated rows per table (keyed by `schema.name`) for copy ETAs, the way the planner estimates:
 * each leaf's rows per page (`reltuples / relpages`) times its current size, summed over a
 * partitioned table's leaves. A leaf without statistics (never analyzed, or analyzed while empty
 * and filled since) makes the table's count exact when small, and unknown (no ETA) when large,
 * rather than scanning a large table twice.
 */
export async function estimateRows(client: pg.Client, tables: SourceTable[]): Promise<Map<string, number>> {
  const { rows } = await client.query<{ oid: number; estimate: number; unknown: boolean; bytes: number }>(
    `SELECT t.oid::int8::int AS oid,
            coalesce(sum(CASE WHEN c.relpages > 0 AND c.reltuples >= 0
                              THEN c.reltuples / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::int) ELSE 0 END), 0)::float8 AS estimate,
            coalesce(bool_or((c.reltuples < 0 OR c.relpages = 0) AND pg_relation_size(c.oid) > 0), false) AS unknown,
            coalesce(sum(pg_relation_size(c.oid)), 0)::float8 AS bytes
       FROM unnest($1::oid[]) AS t(oid)
       LEFT JOIN LATERAL pg_partition_tree(t.oid) AS p ON true
       LEFT JOIN pg_class c ON c.oid = coalesce(p.relid, t.oid) AND c.relkind = 'r' -- no tree rows for a table that is not partitioned
      GROUP BY t.oid`,
    [tables.map((t) => t.oid)],
  );
  const estimates = new Map<string, number>();
  for (const table of tables) {
    const r = rows.find((x) => Number(x.oid) === table.oid);
    if (!r) continue;
    if (!r.unknown) estimates.set(tableKey(table), Math.round(r.estimate));
    else if (r.bytes < COUNT_BELOW_BYTES) {
      // COPY reads an ordinary table without its inheritance children, a partitioned one through its root.
      const from = table.relkind === 'r' ? `ONLY ${qualified(table)}` : qualified(table);
      const { rows: [c] } = await client.query<{ n: number }>(`SELECT count(*)::float8 AS n FROM ${from}`);
      estimates.set(tableKey(table), c?.n ?? 0);
    }
  }
  return estimates;
}
