import pg from 'pg';
import { ErrorCodes, PgferryError, describeError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { ident } from '../pg/connection.js';
import { unfenceSource, type Fence } from './fence.js';
import type { PgBouncerAdmin } from './pgbouncer.js';

/**
 * The fence, recorded durably on the TARGET (schema `pgferry`, keyed by slot) before the source is
 * fenced, so that a pgferry that dies between fence and switch (kill -9, OOM, host loss) does not
 * leave the source read-only for good: the next `pgferry start` restores exactly the saved settings.
 *
 * `stage`: `fenced` from before the fence until the switch starts (safe to undo on restart),
 * `switching` once traffic may be moving to the target (never undone by itself: the applications
 * might already write to the target). The row is deleted after a successful switch or rollback.
 */
export const FENCE_DDL = `
CREATE SCHEMA IF NOT EXISTS pgferry;
CREATE TABLE IF NOT EXISTS pgferry.cutover_fence (
  slot        text PRIMARY KEY,
  database    text NOT NULL,
  roles       text[] NOT NULL,
  previous    jsonb NOT NULL,
  stage       text NOT NULL DEFAULT 'fenced',
  recorded_at timestamptz NOT NULL DEFAULT now()
);`;

export type FenceStage = 'fenced' | 'switching';

export interface FenceRecord {
  fence: Pick<Fence, 'database' | 'roles' | 'previous'>;
  stage: FenceStage;
  recordedAt: string;
}

/**
 * Records `fence` (its previous settings) for `slot`; call before changing anything on the source.
 * The session must commit durably (`synchronous_commit = on`). A record left by an earlier cutover
 * whose rollback did not finish keeps its settings (they are the ones from before any fence: the
 * source may still be fenced now), and gains this fence's roles with their settings.
 */
export async function recordFence(target: pg.Client, slot: string, fence: Pick<Fence, 'database' | 'roles' | 'previous'>): Promise<void> {
  try {
    await target.query(FENCE_DDL);
    await target.query(
      `INSERT INTO pgferry.cutover_fence (slot, database, roles, previous, stage) VALUES ($1, $2, $3, $4, 'fenced')
       ON CONFLICT (slot) DO UPDATE SET database = EXCLUDED.database,
         roles = ARRAY(SELECT DISTINCT r FROM unnest(pgferry.cutover_fence.roles || EXCLUDED.roles) AS r ORDER BY r),
         -- The database's and the fenced roles' entries stay as recorded (absent: not set before the fence).
         previous = (SELECT coalesce(jsonb_object_agg(k, v), '{}') FROM jsonb_each(EXCLUDED.previous) AS e(k, v)
                      WHERE k <> '' AND NOT k = ANY(pgferry.cutover_fence.roles))
                 || (SELECT coalesce(jsonb_object_agg(k, v), '{}') FROM jsonb_each(pgferry.cutover_fence.previous) AS e(k, v)
                      WHERE k = '' OR k = ANY(pgferry.cutover_fence.roles)),
         stage = 'fenced', recorded_at = now()`,
      [slot, fence.database, fence.roles, JSON.stringify(Object.fromEntries(fence.previous))],
    );
  } catch (err) {
    throw new PgferryError(ErrorCodes.CUTOVER, `target: cannot record the fence in pgferry.cutover_fence (${describeError(err)}); the source was not fenced; grant pgferry's role CREATE and write on schema pgferry, then retry the cutover`, { cause: err });
  }
}

/** Marks the recorded fence as past the point where a restart may undo it. */
export async function markFenceSwitching(target: pg.Client, slot: string): Promise<void> {
  await target.query(`UPDATE pgferry.cutover_fence SET stage = 'switching' WHERE slot = $1`, [slot]);
}

/** Forgets the recorded fence (after the switch, or after a rollback restored the source). */
export async function deleteFenceRecord(target: pg.Client, slot: string): Promise<void> {
  await target.query(`DELETE FROM pgferry.cutover_fence WHERE slot = $1`, [slot]);
}

export async function readFenceRecord(target: pg.Client, slot: string): Promise<FenceRecord | null> {
  const { rows: [r] } = await target.query<{ database: string; roles: string[]; previous: Record<string, string>; stage: FenceStage; at: string }>(
    `SELECT database, roles, previous, stage, recorded_at::text AS at FROM pgferry.cutover_fence WHERE slot = $1`,
    [slot],
  );
  if (!r) return null;
  return { fence: { database: r.database, roles: r.roles, previous: new Map(Object.entries(r.previous)) }, stage: r.stage, recordedAt: r.at };
}

/** What {@link undoRecordedFence} found and did. */
export type FenceRecovery = { action: 'none' } | { action: 'restored'; restored: string[] } | { action: 'left'; record: FenceRecord };

/**
 * At start: undoes a fence recorded by a cutover that died before the switch (restores exactly the
 * saved `default_transaction_read_only` settings on the source, logs a warning naming them, deletes
 * the record). A fence recorded as `switching` is left alone and reported: traffic may already be
 * on the target. `source` is the connection settings; a session of its own is opened writable.
 * With `pgbouncer` (the cutover's PgBouncer), its entry is resumed too (the fence may have paused it).
 */
export async function undoRecordedFence(sourceConfig: pg.ClientConfig, target: pg.Client, slot: string, log: Logger, pgbouncer?: { database: string; admin: Pick<PgBouncerAdmin, 'resume'> }): Promise<FenceRecovery> {
  const { rows: [t] } = await target.query<{ present: boolean }>(`SELECT to_regclass('pgferry.cutover_fence') IS NOT NULL AS present`);
  if (!t?.present) return { action: 'none' }; // no cutover has run against this target
  const record = await readFenceRecord(target, slot);
  if (!record) return { action: 'none' };
  const { fence } = record;
  const db = ident(fence.database);
  if (record.stage === 'switching') {
    log.warn(
      { slot, database: fence.database, roles: fence.roles, recordedAt: record.recordedAt },
      `a cutover fenced source database ${fence.database} and stopped during the switch; the source is left read-only because the applications may already use the target. If they still use the source, run ALTER DATABASE ${db} RESET default_transaction_read_only (and ALTER ROLE ... IN DATABASE ${db} RESET for ${fence.roles.join(', ')}), then DELETE FROM pgferry.cutover_fence WHERE slot = '${slot}' on the target${pgbouncer ? `. PgBouncer ${pgbouncer.database} may still be paused and its [databases] entry may point at the target (on disk, in memory after a RELOAD): check SHOW DATABASES on its admin console, fix the entry and RELOAD as needed, then RESUME ${pgbouncer.database}` : ''}`,
    );
    return { action: 'left', record };
  }
  const source = new pg.Client({ ...sourceConfig, options: [sourceConfig.options, '-c default_transaction_read_only=off'].filter(Boolean).join(' '), application_name: 'pgferry unfence' });
  source.on('error', () => {});
  try {
    await source.connect();
    await unfenceSource(source, fence);
  } catch (err) {
    throw new PgferryError(ErrorCodes.CUTOVER, `source: cannot undo the fence an interrupted cutover left on database ${fence.database} (${describeError(err)}); run ALTER DATABASE ${db} RESET default_transaction_read_only and the same ALTER ROLE ... IN DATABASE ${db} for ${fence.roles.join(', ')}, or fix pgferry's source role (ALTER DATABASE/ROLE rights), then start again`, { cause: err });
  } finally {
    await source.end().catch(() => {});
  }
  if (pgbouncer) {
    // RESUME of an entry that is not paused fails; that is the usual case, and harmless.
    await pgbouncer.admin.resume(10_000).then(
      () => log.warn({ slot, pgbouncerDatabase: pgbouncer.database }, `PgBouncer ${pgbouncer.database} resumed after the interrupted cutover`),
      (err: unknown) => log.info({ err: describeError(err) }, `PgBouncer ${pgbouncer.database} not resumed (not paused, or unreachable); if its clients hang, run RESUME ${pgbouncer.database} on its admin console`),
    );
  }
  await deleteFenceRecord(target, slot);
  const describe = (key: string): string => {
    const before = fence.previous.get(key);
    return `${key === '' ? `database ${fence.database}` : `role ${key}`}: ${before === undefined ? 'reset' : `= ${before}`}`;
  };
  const restored = ['', ...fence.roles].map(describe);
  log.warn({ slot, database: fence.database, restored, recordedAt: record.recordedAt }, `a cutover was interrupted between fence and switch; source default_transaction_read_only restored to what it was before the fence (${restored.join('; ')}); the source takes writes again (sessions opened while it was fenced stay read-only until they reconnect)`);
  return { action: 'restored', restored };
}
