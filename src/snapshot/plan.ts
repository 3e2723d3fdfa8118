import { ident, qualified, tableKey } from '../pg/connection.js';
import type { SourceTable } from '../source/catalog.js';

/** Ranges are never smaller than this (8 MB of 8 kB pages), unless a caller asks: a range costs a query and a commit. */
const MIN_RANGE_BLOCKS = 1024;
/** Nor larger than this (1 GB of 8 kB pages): a failed range is redone whole. */
const MAX_RANGE_BLOCKS = 131_072;
/** Aim for this many ranges per worker, so the last ones to finish are short. */
const RANGES_PER_WORKER = 4;

/** A heap relation read by the copy, sized under the snapshot session (after its lock). */
export interface CopiedRelation {
  /** The table pgferry migrates (and writes into on the target). */
  table: SourceTable;
  /** The relation read: an ordinary table itself, or one leaf partition of a partitioned table; null: a partitioned table read through its root, as one unit. */
  leaf: { schema: string; name: string } | null;
  /** Its size in blocks when the copy started. */
  blocks: number;
}

/**
 * One piece of the initial copy: a table, one leaf partition of it, or a block range of either,
 * copied in its own target transaction. Under one snapshot every visible row version lies in
 * exactly one block, so the ranges of a relation partition its rows exactly; the last range is
 * open-ended, so blocks added after sizing cannot be missed.
 */
export interface CopyUnit {
  table: SourceTable;
  /** `COPY ... TO STDOUT` reading this unit's rows, columns in `table.columns` order. */
  copyOut: string;
  /** Blocks this unit reads (the largest go first); the last range counts to the size at planning. */
  blocks: number;
  /** A short label for logs: the relation and its block range. */
  label: string;
}

/**
 * Splits the copy into units: a partitioned table by leaf partition (read `ONLY` the leaf, written
 * through the table so the target routes the rows), and every relation larger than a range into
 * block ranges (TID range scans, PostgreSQL 14+). Units of the largest tables come first, in range
 * order within a table, so the copy ends about when its largest table does. `rangeBlocks` overrides
 * the range size (tests); otherwise it grows with the data so each worker gets a few ranges.
 */
export function planCopyUnits(relations: CopiedRelation[], workers: number, rangeBlocks?: number): CopyUnit[] {
  const total = relations.reduce((sum, r) => sum + r.blocks, 0);
  const size = rangeBlocks ?? Math.min(MAX_RANGE_BLOCKS, Math.max(MIN_RANGE_BLOCKS, Math.ceil(total / (workers * RANGES_PER_WORKER))));
  const tableBlocks = new Map<number, number>();
  for (const r of relations) tableBlocks.set(r.table.oid, (tableBlocks.get(r.table.oid) ?? 0) + r.blocks);
  const ordered = [...relations].sort((a, b) => tableBlocks.get(b.table.oid)! - tableBlocks.get(a.table.oid)! || a.table.oid - b.table.oid || b.blocks - a.blocks);
  const units: CopyUnit[] = [];
  for (const r of ordered) {
    const cols = r.table.columns.map(ident).join(', ');
    if (!r.leaf) {
      // COPY TO cannot read a partitioned table directly; a query over its root reads every partition.
      units.push({ table: r.table, copyOut: `COPY (SELECT ${cols} FROM ${qualified(r.table)}) TO STDOUT`, blocks: r.blocks, label: tableKey(r.table) });
      continue;
    }
    const from = qualified(r.leaf);
    const label = tableKey(r.leaf);
    if (r.blocks <= size) {
      // COPY of a table reads that table only, never its inheritance children.
      units.push({ table: r.table, copyOut: `COPY ${from} (${cols}) TO STDOUT`, blocks: r.blocks, label });
      continue;
    }
    for (let start = 0; start < r.blocks; start += size) {
      const end = start + size < r.blocks ? start + size : null;
      const where = [start > 0 ? `ctid >= '(${start},0)'::tid` : '', end !== null ? `ctid < '(${end},0)'::tid` : ''].filter(Boolean).join(' AND ');
      units.push({
        table: r.table,
        copyOut: `COPY (SELECT ${cols} FROM ONLY ${from} WHERE ${where}) TO STDOUT`,
        blocks: (end ?? r.blocks) - start,
        label: `${label} blocks ${start}-${end ?? 'end'}`,
      });
    }
  }
  return units;
}
