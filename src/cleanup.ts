import pg from 'pg';
import type { Settings } from './config/settings.js';
import { PgferryError, ErrorCodes, PreflightError, describeError } from './errors.js';
import { ident, negotiateSsl } from './pg/connection.js';
import { dropSlot } from './source/slot.js';
import { removeDdlCapture } from './ddl/capture.js';
import { INSTANCE_LOCK, deleteMigration, lockShares, readMigration, unlockShares } from './apply/state-store.js';
import { resolvePreparedShares } from './apply/lanes.js';

/**
 * Removes what pgferry created for one migration: the slot, the publication and the DDL capture
 * (event triggers, function) on the source, the progress rows on the target (and the `pgferry`
 * schema once no migration is left). Safe to run twice. Refuses while a pgferry process is
 * streaming from the slot.
 */
export async function cleanup(settings: Settings): Promise<string[]> {
  const done: string[] = [];
  await negotiateSsl(settings.source, settings.target);
  // After a cutover the source stays read-only (default_transaction_read_only): cleanup's own changes are allowed.
  const source = new pg.Client({ ...settings.source, options: [settings.source.options, '-c default_transaction_read_only=off'].filter(Boolean).join(' ') });
  const target = new pg.Client(settings.target);
  for (const [side, c] of [['source', source], ['target', target]] as const) {
    c.on('error', () => {});
    try {
      await c.connect();
    } catch (err) {
      throw new PgferryError(ErrorCodes.CONNECTION, `${side}: cannot connect (${describeError(err)})`);
    }
  }
  try {
    // A pgferry running this migration holds its lock on the target (also while copying, when the slot is idle).
    const { rows: [lock] } = await target.query<{ ok: boolean }>('SELECT pg_catalog.pg_try_advisory_lock($1::int4, pg_catalog.hashtext($2)) AS ok', [INSTANCE_LOCK, settings.slot]);
    if (!lock?.ok) throw new PreflightError(`target: a pgferry is running migration ${settings.slot} on this database; stop it first, then run cleanup`);
    const slot = await source.query<{ database: string; here: string }>('SELECT database, current_database() AS here FROM pg_replication_slots WHERE slot_name = $1', [settings.slot]);
    const other = slot.rows[0] && slot.rows[0].database !== slot.rows[0].here ? slot.rows[0] : null;
    if (other) {
      throw new PreflightError(`source: replication slot ${settings.slot} belongs to database ${other.database}, not ${other.here}; run cleanup with the --source URL of ${other.database} (or check --slot), nothing was dropped`);
    }
    if (slot.rowCount) {
      await dropSlot(source, settings.slot, 5_000);
      done.push(`source: dropped replication slot ${settings.slot}`);
    }
    if (await removeDdlCapture(source, settings.slot)) done.push(`source: dropped the DDL capture event triggers and function of slot ${settings.slot}`);
    const publication = await source.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [settings.publication]);
    if (publication.rowCount) {
      await source.query(`DROP PUBLICATION ${ident(settings.publication)}`);
      done.push(`source: dropped publication ${settings.publication}`);
    }
    const hasState = (await target.query(`SELECT to_regclass('pgferry.migration') IS NOT NULL AS ok`)).rows[0]?.ok === true;
    // Shares of a spread group a crashed pgferry prepared (they hold row locks until settled).
    await lockShares(target, settings.slot); // see SHARES_LOCK
    const applied = hasState ? ((await readMigration(target, settings.slot, { waitForWriters: true }))?.appliedLsn ?? null) : null;
    const settled = await resolvePreparedShares(target, settings.slot, applied);
    await unlockShares(target, settings.slot);
    if (settled.committed + settled.rolledBack > 0) done.push(`target: settled ${settled.committed + settled.rolledBack} prepared transaction(s) of slot ${settings.slot} (${settled.committed} committed, ${settled.rolledBack} rolled back)`);
    if (hasState) {
      await deleteMigration(target, settings.slot);
      const { rows: [r] } = await target.query<{ n: number }>('SELECT count(*)::int AS n FROM pgferry.migration');
      if (r?.n === 0) {
        await target.query('DROP SCHEMA pgferry CASCADE');
        done.push('target: dropped schema pgferry');
      } else done.push(`target: removed the progress of slot ${settings.slot}`);
    }
  } finally {
    await source.end().catch(() => {});
    await target.end().catch(() => {});
  }
  return done;
}
