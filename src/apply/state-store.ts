import type pg from 'pg';
import { formatLsn, parseLsn, type Lsn } from '../protocol/lsn.js';
import type { TableName } from '../pg/connection.js';
import { ErrorCodes, PgferryError } from '../errors.js';

/**
 * pgferry's own state lives in the target, in schema `pgferry`, keyed by slot name, so that it
 * commits atomically with the data it describes.
 *
 * `migration.phase`: `snapshot` while the initial copy runs, `streaming` once every table is
 * copied. `consistent_point` is the slot's consistent point C, recorded once the slot exists (NULL
 * before): streaming starts there. `applied_lsn` is the end LSN of the last source transaction whose
 * changes are committed here; it only moves forward. `schema_finished_at`: when schema copy's last
 * step (run while streaming) succeeded; NULL until then, and again for a new copy.
 *
 * `table_copy.snapshot_lsn` is the consistent point L of the snapshot a copied table was read under:
 * C for the first copy, later for a table copied by a resumed copy. Changes to that table committed
 * before L are in its copy; streaming from C skips them (`withoutCopied` in src/snapshot/already-copied.ts).
 */
/**
 * First key of the target advisory lock a running pgferry holds for its migration (the second is
 * `hashtext(slot)`): one process per migration, and no cleanup under a running one ("pgfr").
 */
export const INSTANCE_LOCK = 0x70676672;

/**
 * First key of the target advisory lock (the second is `hashtext(slot)`) a session holds while it
 * commits a spread group (progress row, then its prepared shares) and while it settles shares
 * another run left ("pgsh"): a run that took the migration over never settles shares that another
 * still commits, and a group whose shares were settled meanwhile never commits its progress row.
 */
export const SHARES_LOCK = 0x70677368;

/** Takes {@link SHARES_LOCK} for `slot` (session level: it outlives the transaction). */
export async function lockShares(client: pg.Client, slot: string): Promise<void> {
  await client.query('SELECT pg_catalog.pg_advisory_lock($1::int4, pg_catalog.hashtext($2))', [SHARES_LOCK, slot]);
}

export async function unlockShares(client: pg.Client, slot: string): Promise<void> {
  await client.query('SELECT pg_catalog.pg_advisory_unlock($1::int4, pg_catalog.hashtext($2))', [SHARES_LOCK, slot]);
}

export const STATE_DDL = `
CREATE SCHEMA IF NOT EXISTS pgferry;
CREATE TABLE IF NOT EXISTS pgferry.migration (
  slot        text PRIMARY KEY,
  phase       text NOT NULL,
  applied_lsn pg_lsn,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS pgferry.table_copy (
  slot        text NOT NULL,
  schema_name text NOT NULL,
  table_name  text NOT NULL,
  state       text NOT NULL,
  rows_copied bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (slot, schema_name, table_name)
);
ALTER TABLE pgferry.table_copy ADD COLUMN IF NOT EXISTS units_copied integer NOT NULL DEFAULT 0;
ALTER TABLE pgferry.table_copy ADD COLUMN IF NOT EXISTS snapshot_lsn pg_lsn;
ALTER TABLE pgferry.table_copy ADD COLUMN IF NOT EXISTS copied_at timestamptz;
ALTER TABLE pgferry.migration ADD COLUMN IF NOT EXISTS consistent_point pg_lsn;
ALTER TABLE pgferry.migration ADD COLUMN IF NOT EXISTS schema_finished_at timestamptz;`;

/** `done`: cut over; the applications use the target, and nothing more is streamed into it. */
export type StoredPhase = 'snapshot' | 'streaming' | 'done';

export interface MigrationState {
  phase: StoredPhase;
  appliedLsn: Lsn | null;
  /** The slot's consistent point; null until the slot of this copy is created. */
  consistentPoint: Lsn | null;
  /** Schema copy's last step (run while streaming) has succeeded for this copy. */
  schemaFinished: boolean;
}

/** Creates pgferry's schema and tables on the target if missing. */
export async function ensureStateSchema(client: pg.Client): Promise<void> {
  await client.query(STATE_DDL);
}

export async function readMigration(client: pg.Client, slot: string, opts: { waitForWriters?: boolean } = {}): Promise<MigrationState | null> {
  // FOR UPDATE waits for a transaction still writing the row (a commit of a session being torn
  // down), so the value read is the one that transaction leaves.
  const { rows: [r] } = await client.query<{ phase: StoredPhase; applied_lsn: string | null; consistent_point: string | null; schema_finished: boolean }>(
    `SELECT phase, applied_lsn::text AS applied_lsn, consistent_point::text AS consistent_point, schema_finished_at IS NOT NULL AS schema_finished FROM pgferry.migration WHERE slot = $1${opts.waitForWriters ? ' FOR UPDATE' : ''}`,
    [slot],
  );
  if (!r) return null;
  return { phase: r.phase, appliedLsn: r.applied_lsn ? parseLsn(r.applied_lsn) : null, consistentPoint: r.consistent_point ? parseLsn(r.consistent_point) : null, schemaFinished: r.schema_finished };
}

/** Records that schema copy's last step has succeeded: later starts skip it. */
export async function markSchemaFinished(client: pg.Client, slot: string): Promise<void> {
  await client.query(`UPDATE pgferry.migration SET schema_finished_at = now() WHERE slot = $1`, [slot]);
}

/** Starts (or restarts) the initial copy from scratch: any previous copy progress and consistent point for this slot are forgotten. */
export async function beginSnapshotPhase(client: pg.Client, slot: string, tables: TableName[]): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(
      `INSERT INTO pgferry.migration (slot, phase, applied_lsn) VALUES ($1, 'snapshot', NULL)
       ON CONFLICT (slot) DO UPDATE SET phase = 'snapshot', applied_lsn = NULL, consistent_point = NULL, schema_finished_at = NULL, updated_at = now()`,
      [slot],
    );
    await client.query('DELETE FROM pgferry.table_copy WHERE slot = $1', [slot]);
    for (const t of tables) {
      await client.query(`INSERT INTO pgferry.table_copy (slot, schema_name, table_name, state) VALUES ($1, $2, $3, 'pending')`, [slot, t.schema, t.name]);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** Records the consistent point of the slot just created for this copy (before any table is copied under it). */
export async function recordConsistentPoint(client: pg.Client, slot: string, lsn: Lsn): Promise<void> {
  await client.query('UPDATE pgferry.migration SET consistent_point = $2, updated_at = now() WHERE slot = $1', [slot, formatLsn(lsn)]);
}

/** One table of this slot's initial copy: copied or not, its rows, and the consistent point of the snapshot it was copied under. */
export interface TableCopy extends TableName {
  copied: boolean;
  rows: number;
  snapshotLsn: Lsn | null;
}

export async function readTableCopies(client: pg.Client, slot: string): Promise<TableCopy[]> {
  const { rows } = await client.query<{ schema: string; name: string; state: string; rows: string; snapshot_lsn: string | null }>(
    `SELECT schema_name AS schema, table_name AS name, state, rows_copied AS rows, snapshot_lsn::text AS snapshot_lsn
       FROM pgferry.table_copy WHERE slot = $1 ORDER BY 1, 2`,
    [slot],
  );
  return rows.map((r) => ({ schema: r.schema, name: r.name, copied: r.state === 'copied', rows: Number(r.rows), snapshotLsn: r.snapshot_lsn ? parseLsn(r.snapshot_lsn) : null }));
}

/** Forgets the copy progress of `tables` (to be copied again, their target rows removed first). */
export async function resetTableCopies(client: pg.Client, slot: string, tables: TableName[]): Promise<void> {
  await client.query(
    `UPDATE pgferry.table_copy SET state = 'pending', units_copied = 0, rows_copied = 0, snapshot_lsn = NULL, copied_at = NULL
      WHERE slot = $1 AND (schema_name, table_name) IN (SELECT * FROM unnest($2::text[], $3::text[]))`,
    [slot, tables.map((t) => t.schema), tables.map((t) => t.name)],
  );
}

/**
 * Counts one copy unit of a table (of `units` in all) and its rows; the unit that completes the
 * count marks the table `copied`, with the consistent point of the snapshot it was read under.
 * Call inside the transaction that holds the unit's COPY: the row lock serialises concurrent units
 * of one table, so exactly the last to commit marks it.
 */
export async function markUnitCopied(client: pg.Client, slot: string, t: TableName, rows: number, units: number, snapshotLsn: Lsn): Promise<void> {
  await client.query(
    `UPDATE pgferry.table_copy
        SET units_copied = units_copied + 1, rows_copied = rows_copied + $4,
            state = CASE WHEN units_copied + 1 >= $5 THEN 'copied' ELSE 'copying' END,
            snapshot_lsn = $6, copied_at = CASE WHEN units_copied + 1 >= $5 THEN clock_timestamp() END
      WHERE slot = $1 AND schema_name = $2 AND table_name = $3`,
    [slot, t.schema, t.name, rows, units, formatLsn(snapshotLsn)],
  );
}

/** The copy is complete: streaming starts at the slot's consistent point. */
export async function beginStreamingPhase(client: pg.Client, slot: string, consistentPoint: Lsn): Promise<void> {
  await client.query(`UPDATE pgferry.migration SET phase = 'streaming', applied_lsn = $2, updated_at = now() WHERE slot = $1`, [slot, formatLsn(consistentPoint)]);
}

/** The cutover has switched traffic: a later start must not stream into the target again. */
export async function markCutOver(client: pg.Client, slot: string): Promise<void> {
  await client.query(`UPDATE pgferry.migration SET phase = 'done', updated_at = now() WHERE slot = $1`, [slot]);
}

/**
 * Stores the applied position. Must run inside the target transaction that holds the changes up to
 * `endLsn`, so progress and data commit (or vanish) together. Never moves backwards.
 */
export async function saveAppliedLsn(client: pg.Client, slot: string, endLsn: Lsn): Promise<void> {
  const { rowCount } = await client.query(
    `UPDATE pgferry.migration SET applied_lsn = greatest(applied_lsn, $2::pg_lsn), updated_at = now() WHERE slot = $1`,
    [slot, formatLsn(endLsn)],
  );
  if (rowCount !== 1) throw new PgferryError(ErrorCodes.STATE, `target: pgferry's progress row for slot ${slot} is gone (was pgferry.migration emptied?); start over with pgferry cleanup, then pgferry start`);
}

/** Drops this slot's state (used by cleanup and by tests). */
export async function deleteMigration(client: pg.Client, slot: string): Promise<void> {
  await client.query('DELETE FROM pgferry.table_copy WHERE slot = $1', [slot]);
  await client.query('DELETE FROM pgferry.migration WHERE slot = $1', [slot]);
}
