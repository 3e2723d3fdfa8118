import type pg from 'pg';
import { PreflightError, describeError } from '../errors.js';
import { ident, qualified, tableKey } from '../pg/connection.js';
import type { SourceTable } from '../source/catalog.js';

/**
 * Checks the target before anything is copied: writable, allowed to apply as a replica
 * (`session_replication_role`), and holding every selected table with every replicated column.
 * With `mustBeEmpty` (a fresh start), tables holding rows are refused: pgferry never mixes its copy
 * with rows it did not write. With `shapeFromStream` (a resume with DDL capture), a missing table or
 * column is not a problem: the target's shape follows the stream, which has not caught up with the
 * source's current catalog yet (the applier checks each relation against the stream's own shape).
 * With `applySessions` above 1, the target must allow that many minus one prepared transactions
 * (src/apply/lanes.ts). Reports every problem at once.
 */
export async function preflightTarget(client: pg.Client, tables: SourceTable[], opts: { mustBeEmpty: boolean; shapeFromStream?: boolean; applySessions?: number }): Promise<void> {
  const problems: string[] = [];
  const { rows: [s] } = await client.query<{ recovery: boolean; read_only: string; user: string; db: string; prepared: number }>(
    `SELECT pg_is_in_recovery() AS recovery, current_setting('default_transaction_read_only') AS read_only, current_user AS user, current_database() AS db,
            current_setting('max_prepared_transactions')::int AS prepared`,
  );
  if (!s) throw new PreflightError('target: could not read server settings');
  if (s.recovery) throw new PreflightError('target: the server is a read-only standby; point --target at a writable primary');
  if (s.read_only === 'on') problems.push(`target: database ${s.db} is read-only for ${s.user}; run ALTER DATABASE ${ident(s.db)} SET default_transaction_read_only = off`);
  const helpers = (opts.applySessions ?? 1) - 1;
  if (helpers > s.prepared) {
    problems.push(`target: max_prepared_transactions is ${s.prepared}, and --apply-sessions ${helpers + 1} needs at least ${helpers}; raise it on the target (postgresql.conf, then restart) or use --apply-sessions 1`);
  }
  try {
    await client.query('SET session_replication_role = replica; RESET session_replication_role');
  } catch (err) {
    problems.push(`target: role ${s.user} cannot set session_replication_role (${describeError(err)}); use a superuser or, on PostgreSQL 15+, GRANT SET ON PARAMETER session_replication_role TO ${ident(s.user)}`);
  }
  for (const t of tables) {
    const { rows } = await client.query<{ name: string; generated: string }>(
      `SELECT a.attname AS name, a.attgenerated AS generated FROM pg_attribute a
        WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
      [qualified(t)],
    );
    if (rows.length === 0 && opts.shapeFromStream) continue;
    if (rows.length === 0) {
      problems.push(`target: table ${tableKey(t)} does not exist; create it on the target first, or leave schema copy on (--schema-copy=true)`);
      continue;
    }
    const missing = t.columns.filter((c) => !rows.some((r) => r.name === c && r.generated === ''));
    if (missing.length > 0 && !opts.shapeFromStream) problems.push(`target: table ${tableKey(t)} lacks column(s) ${missing.map((c) => `"${c}"`).join(', ')} (or has them as generated columns); add them as plain columns`);
    const privileges = await client.query<{ ok: boolean }>(`SELECT bool_and(has_table_privilege($1::regclass, p)) AS ok FROM unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p`, [qualified(t)]);
    if (!privileges.rows[0]?.ok) problems.push(`target: role ${s.user} cannot write table ${tableKey(t)}; run GRANT INSERT, UPDATE, DELETE, TRUNCATE ON ${qualified(t)} TO ${ident(s.user)}`);
    if (opts.mustBeEmpty) {
      const { rowCount } = await client.query(`SELECT 1 FROM ${qualified(t)} LIMIT 1`);
      if (rowCount) problems.push(`target: table ${tableKey(t)} already holds rows; empty it (TRUNCATE ${qualified(t)}) so the copy starts clean`);
    }
  }
  if (problems.length > 0) throw new PreflightError(problems.join('\n'));
}
