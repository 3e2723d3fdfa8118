import pg from 'pg';
import type { Settings } from '../config/settings.js';
import { ErrorCodes, PgferryError, describeError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { ident, qualified, tableKey } from '../pg/connection.js';
import { formatLsn, parseLsn, type Lsn } from '../protocol/lsn.js';
import { listSourceTables, type SourceTable } from '../source/catalog.js';
import { dropSlot } from '../source/slot.js';
import { lagBytes, lagSeconds, type MigrationStatus } from '../status.js';
import { verify } from '../verify/verify.js';
import { endReadOnlySessions, fenceSource, makeTargetWritable, planFence, unfenceSource, type Fence } from './fence.js';
import { deleteFenceRecord, markFenceSwitching, readFenceRecord, recordFence } from './fence-record.js';
import { markCutOver } from '../apply/state-store.js';
import { callWebhook, runHook, targetDetails } from './hook.js';
import { PgBouncerAdmin, restoreFile, rewriteDatabaseEntry } from './pgbouncer.js';
import { syncSequences } from './sequences.js';
import type { CutoverState, CutoverStep, CutoverStepName } from './state.js';

/** The cutover's own sessions: writable even once the database is fenced, commits durable before they count. */
const SESSION_OPTIONS = '-c default_transaction_read_only=off -c synchronous_commit=on';
/** While draining, a logical message is committed this often so an idle source still shows the stream passing the fence. */
const NUDGE_INTERVAL_MS = 500;
/** The setting that bounds each step (several share one). */
const STEP_TIMEOUT_SETTING: Partial<Record<CutoverStepName, string>> = {
  schema: 'cutoverLagTimeout',
  lag: 'cutoverLagTimeout',
  fence: 'cutoverFenceTimeout',
  drain: 'cutoverDrainTimeout',
  sequences: 'cutoverDrainTimeout',
  verify: 'cutoverVerifyTimeout',
  recheck: 'cutoverDrainTimeout',
  switch: 'cutoverSwitchTimeout',
  finish: 'cutoverSwitchTimeout',
};
/** How long a timed-out step's work is waited for before the rollback starts anyway. */
const STEP_SETTLE_MS = 10_000;
/** Time the rollback may take (unfence, PgBouncer RESUME). */
const ROLLBACK_TIMEOUT_MS = 30_000;

/** What the cutover needs from the running service. */
export interface CutoverDeps {
  settings: Settings;
  status: MigrationStatus;
  log: Logger;
  metrics: Metrics;
  /** Ends streaming (after the switch: the fenced source has nothing left to send). */
  stopStreaming: () => Promise<void>;
}

/** Why a cutover cannot start now (HTTP 409). */
export class CutoverRefused extends PgferryError {
  constructor(message: string) {
    super(ErrorCodes.CUTOVER, message);
    this.name = 'CutoverRefused';
  }
}

/**
 * Moves the applications from the source to the target: wait for low lag, fence writes on the
 * source (PgBouncer PAUSE, read-only database and writer roles, their sessions terminated), drain
 * to the exact source WAL position read after the fence, sync sequences, verify, switch traffic
 * (PgBouncer entry rewritten, RELOAD, RESUME; hook; webhook), finish.
 *
 * Invariant: until the switch, every failure or timeout rolls back (PgBouncer config restored,
 * source unfenced, PgBouncer resumed, phase back to `streaming`); streaming never stops before
 * the switch, so nothing committed on the source is lost.
 */
export class Cutover {
  private running: Promise<void> | null = null;

  constructor(private readonly deps: CutoverDeps) {}

  /** Starts a cutover in the background and returns its live state; throws {@link CutoverRefused} when one cannot start. */
  start(): CutoverState {
    const { status } = this.deps;
    if (status.cutover?.state === 'running') throw new CutoverRefused('a cutover is already running; follow it in GET /status');
    if (status.phase !== 'streaming') throw new CutoverRefused(`cutover needs phase streaming, the migration is in phase ${status.phase}${status.phase === 'done' ? ' (already cut over)' : '; wait until it streams'}`);
    const state: CutoverState = { state: 'running', startedAt: new Date().toISOString(), finishedAt: null, steps: [], writeBlockedSeconds: null, error: null };
    status.cutover = state;
    status.phase = 'cutover';
    this.running = this.run(state).catch((err: unknown) => {
      // run() handles its own failures; this is a last resort that still never leaves a wrong phase.
      state.state = 'failed';
      state.error = describeError(err);
      this.deps.log.error({ err }, 'cutover failed unexpectedly');
    });
    return state;
  }

  /** Settles when the current cutover has ended (done or rolled back). */
  async wait(): Promise<void> {
    await this.running;
  }

  private async run(state: CutoverState): Promise<void> {
    const { settings, status, log } = this.deps;
    const c = settings.cutover;
    const pgbouncer = c.pgbouncerAdmin && c.pgbouncerDatabase ? new PgBouncerAdmin(c.pgbouncerAdmin, c.pgbouncerDatabase) : null;
    let source: pg.Client | null = null;
    let target: pg.Client | null = null;
    let fence: Fence | null = null;
    let recorded = false;
    let paused = false;
    let savedConfig: string | null = null;
    let switched = false;
    let fencedAt = 0;
    /** The source position right after the fence: no transaction may write after it. */
    let fenceLsn: Lsn | null = null;
    /**
     * Fails when a transaction that wrote to a migrated table committed on the source after the
     * fence (a session the fence could not stop: `BEGIN READ WRITE`, `SET default_transaction_read_only`):
     * its writes, and any after it, would be lost by the switch.
     */
    const noWritesAfterFence = (): void => {
      const last = status.lastWriteCommitLsn;
      if (fenceLsn !== null && last !== null && last > fenceLsn) {
        throw new PgferryError(
          ErrorCodes.CUTOVER,
          `source: a transaction wrote to a migrated table after the fence (committed at ${formatLsn(last)}, fence at ${formatLsn(fenceLsn)}): a session is writing despite default_transaction_read_only (BEGIN READ WRITE, or SET default_transaction_read_only = off); find it in pg_stat_activity on the source, stop it, then retry the cutover`,
        );
      }
    };
    /** Waits until the target has confirmed the source's current position (nudging an idle source). */
    const drainTo = async (s: pg.Client, signal: AbortSignal, what: string): Promise<Lsn> => {
      const { rows: [r] } = await s.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
      const lsn = parseLsn(r!.lsn);
      let nudged = 0;
      for (;;) {
        // Confirmed, not just applied: the target has flushed it (apply commits asynchronously), so a
        // target crash right after the switch cannot take back a transaction the source committed.
        const reached = status.confirmedLsn;
        if (reached !== null && reached >= lsn) return lsn;
        if (signal.aborted) throw new PgferryError(ErrorCodes.CUTOVER, `the target did not apply up to ${what} ${formatLsn(lsn)} in time (applied ${status.appliedLsn === null ? '-' : formatLsn(status.appliedLsn)}, confirmed ${status.confirmedLsn === null ? '-' : formatLsn(status.confirmedLsn)}${status.lastError ? `; last error: ${status.lastError}` : ''}); check /status lastError and the target, or raise cutoverDrainTimeout`);
        if (Date.now() - nudged >= NUDGE_INTERVAL_MS) {
          nudged = Date.now();
          // A committed (empty for pgoutput) transaction past the position: the stream confirms past it.
          await s.query(`SELECT pg_logical_emit_message(true, 'pgferry', 'cutover drain')`);
        }
        await pause(20);
      }
    };
    log.info({ verify: c.verify, pgbouncer: Boolean(pgbouncer), hook: Boolean(c.hook), webhook: Boolean(c.webhook) }, 'cutover started');
    try {
      source = await connect(settings.source, 'source');
      target = await connect(settings.target, 'target');
      const s = source;
      const t = target;
      const { tables } = await listSourceTables(s, settings.tables);

      // Before the fence, so that waiting costs the applications nothing.
      await this.step(state, 'schema', c.lagTimeoutMs, async (signal) => {
        for (;;) {
          const f = status.schemaFinishing;
          if (f === null || f.state === 'done') return f === null ? 'no schema copy' : 'foreign keys validated, tables analyzed';
          if (f.state === 'failed') throw new PgferryError(ErrorCodes.CUTOVER, `schema copy's last step failed (${f.error ?? 'unknown'}); fix the target and restart pgferry (it runs the step again), then retry the cutover`);
          if (signal.aborted) throw new PgferryError(ErrorCodes.CUTOVER, 'schema copy is still validating foreign keys and analyzing tables on the target; retry when GET /status shows schemaFinishing done, or raise cutoverLagTimeout');
          await pause(100);
        }
      });

      await this.step(state, 'lag', c.lagTimeoutMs, async (signal) => {
        for (;;) {
          const bytes = lagBytes(status);
          const secs = lagSeconds(status);
          if (bytes !== null && bytes <= c.maxLagBytes && secs <= c.maxLagSeconds && status.connected.source && status.connected.target) return `lag ${bytes} bytes, ${secs.toFixed(1)} s`;
          if (signal.aborted) throw new PgferryError(ErrorCodes.CUTOVER, `lag stayed above cutoverMaxLagBytes ${c.maxLagBytes} / cutoverMaxLagSeconds ${c.maxLagSeconds} (now ${bytes ?? 'unknown'} bytes, ${secs.toFixed(1)} s${status.connected.source && status.connected.target ? '' : ', not connected to both sides'}); retry when pgferry has caught up, or raise the thresholds`);
          await pause(100);
        }
      });

      fencedAt = performance.now();
      await this.step(state, 'fence', c.fenceTimeoutMs, async (signal) => {
        const plan = await planFence(s, tables.map((x) => x.oid));
        if (signal.aborted) throw new PgferryError(ErrorCodes.CUTOVER, 'fence: timed out before the source was fenced');
        // Durably on the target before any change (PgBouncer's PAUSE included): a pgferry that dies
        // from now on is undone by the next start (settings restored, PgBouncer resumed).
        await recordFence(t, settings.slot, plan);
        recorded = true;
        // A record left by an unfinished rollback keeps the settings from before any fence: restore those.
        const kept = (await readFenceRecord(t, settings.slot))?.fence;
        if (kept) Object.assign(plan, { roles: kept.roles, previous: kept.previous });
        fence = plan; // before any change: a rollback restores whatever the fence got to
        if (pgbouncer) {
          if (signal.aborted) throw new PgferryError(ErrorCodes.CUTOVER, 'fence: timed out before PgBouncer was paused');
          paused = true; // set first: a PAUSE that times out is still in force until RESUME
          await pgbouncer.pause(c.fenceTimeoutMs);
        }
        await fenceSource(s, plan, signal);
        return `${plan.roles.length} writer role(s) read-only (${plan.roles.join(', ')}), ${plan.terminated} session(s) terminated${pgbouncer ? `, PgBouncer ${c.pgbouncerDatabase} paused` : ''}`;
      });

      await this.step(state, 'drain', c.drainTimeoutMs, async (signal) => {
        fenceLsn = await drainTo(s, signal, 'the fence position');
        noWritesAfterFence();
        return `target applied and flushed up to ${formatLsn(fenceLsn)} (the source position after the fence)`;
      });

      await this.step(state, 'sequences', c.drainTimeoutMs, async () => {
        const r = await syncSequences(s, t);
        if (r.missing.length > 0) log.warn({ sequences: r.missing }, 'source sequences not on the target were not synced');
        return `${r.advanced.length} advanced, ${r.ahead.length} already at or ahead${r.missing.length ? `, ${r.missing.length} not on the target (${r.missing.slice(0, 5).join(', ')})` : ''}`;
      });

      await this.step(state, 'verify', c.verifyTimeoutMs, async () => {
        try {
          return await this.verifyStep(s, t, tables);
        } catch (err) {
          // Rows differ because a session wrote after the fence? Say that rather than "rows differ".
          await drainTo(s, AbortSignal.timeout(Math.min(c.drainTimeoutMs, 10_000)), 'the source position').catch(() => {});
          noWritesAfterFence();
          throw err;
        }
      });

      // Sequences and verify took a while: once more, nothing may have been written since the fence.
      await this.step(state, 'recheck', c.drainTimeoutMs, async (signal) => {
        const lsn = await drainTo(s, signal, 'the source position');
        noWritesAfterFence();
        return `no write on the source since the fence; target confirmed up to ${formatLsn(lsn)}`;
      });

      await this.step(state, 'switch', c.switchTimeoutMs, async () => {
        // From here a restart must not unfence by itself: the applications may already use the target.
        await markFenceSwitching(t, settings.slot);
        const done: string[] = [];
        const details = targetDetails(settings.target, settings.targetUrl);
        if (pgbouncer && c.pgbouncerConfig && c.pgbouncerDatabase) {
          savedConfig = await rewriteDatabaseEntry(c.pgbouncerConfig, c.pgbouncerDatabase, { host: String(settings.target.host ?? 'localhost'), port: Number(settings.target.port ?? 5432), database: String(settings.target.database ?? '') });
          await pgbouncer.reload(c.switchTimeoutMs);
          await pgbouncer.resume(c.switchTimeoutMs);
          switched = true;
          paused = false;
          done.push(`PgBouncer ${c.pgbouncerDatabase} now points at the target and is resumed`);
        }
        try {
          if (c.hook) {
            done.push(`hook ran${await runHook(c.hook, details, c.switchTimeoutMs).then((tail) => (tail ? `: ${tail}` : ''))}`);
            switched = true; // the hook moved traffic: a failing webhook after it cannot undo that
          }
          if (c.webhook) {
            await callWebhook(c.webhook, details, c.switchTimeoutMs);
            done.push('webhook called');
          }
        } catch (err) {
          if (!switched) throw err;
          // Traffic already moved (PgBouncer, or the hook before a webhook): the cutover goes on, the failure is reported.
          log.error({ err }, 'cutover hook or webhook failed after traffic switched; run it by hand');
          done.push(`but ${describeError(err)}`);
        }
        switched = true;
        state.writeBlockedSeconds = round((performance.now() - fencedAt) / 1000);
        this.deps.metrics.writeBlocked.set(state.writeBlockedSeconds);
        return done.length > 0 ? done.join('; ') : 'no PgBouncer, hook or webhook configured: point the applications at the target now';
      });
      log.info({ writeBlockedSeconds: state.writeBlockedSeconds }, 'traffic switched to the target; writes were blocked for this long');
      // Together: no moment where a restart would find neither the record nor the phase done (and stream into the target).
      await t
        .query('BEGIN')
        .then(() => markCutOver(t, settings.slot))
        .then(() => deleteFenceRecord(t, settings.slot))
        .then(() => t.query('COMMIT'))
        .catch(async (err: unknown) => {
          await t.query('ROLLBACK').catch(() => {});
          log.warn({ err }, `could not record the switch on the target; run UPDATE pgferry.migration SET phase = 'done' WHERE slot = '${settings.slot}' and DELETE FROM pgferry.cutover_fence WHERE slot = '${settings.slot}' on the target`);
        });

      await this.step(state, 'finish', c.switchTimeoutMs, async () => {
        // Again, in case recording the switch failed: a restarted pgferry must not stream into the target the applications use.
        await markCutOver(t, settings.slot);
        const writable = await makeTargetWritable(t, fence!.roles);
        const notes = [writable.length > 0 ? `target made writable (${writable.join(', ')})` : 'target writable', 'source left read-only'];
        // A write that slipped past the fence after the recheck (a session opting out of read-only)
        // still reaches the target if it committed by now: drain before streaming stops, and say so.
        const upTo = await drainTo(s, AbortSignal.timeout(c.drainTimeoutMs), 'the source position').catch((err: unknown) => {
          log.error({ err }, 'could not drain to the source position before stopping: a write after the fence may be missing on the target');
          notes.push('could not drain to the source position before stopping (see the log)');
          return null;
        });
        try {
          noWritesAfterFence();
        } catch (err) {
          log.error({ err }, 'a transaction wrote to a migrated table after the fence, past the recheck; it is on the target too, but the session that wrote it may still write to the source: stop it');
          notes.push(`a write after the fence was applied too${upTo === null ? '' : ` (up to ${formatLsn(upTo)})`}: stop the session on the source that wrote it`);
        }
        await this.deps.stopStreaming();
        if (c.dropSlot) {
          await dropSlot(s, settings.slot);
          const { rowCount } = await s.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [settings.publication]);
          if (rowCount) await s.query(`DROP PUBLICATION ${ident(settings.publication)}`);
          notes.push(`slot ${settings.slot} and publication ${settings.publication} dropped`);
        } else notes.push(`slot ${settings.slot} and publication ${settings.publication} kept (pgferry cleanup drops them)`);
        return notes.join('; ');
      });
      status.phase = 'done';
      state.state = 'done';
      log.info({ writeBlockedSeconds: state.writeBlockedSeconds }, 'cutover done: the applications use the target; the source stays read-only');
    } catch (err) {
      state.error = describeError(err);
      if (switched) {
        // Past the point of no return: the applications may already write to the target.
        state.state = 'failed';
        status.lastError = `cutover: ${state.error}`;
        log.error({ err }, 'cutover failed after the switch; the applications use the target, finish by hand');
      } else {
        log.warn({ err }, 'cutover failed before the switch; rolling back');
        await this.rollback(state, { fence, recorded, paused, savedConfig, pgbouncer });
      }
    } finally {
      state.finishedAt = new Date().toISOString();
      await source?.end().catch(() => {});
      await target?.end().catch(() => {});
    }
  }

  /** Undoes everything before the switch; each part is attempted even when another fails. */
  private async rollback(state: CutoverState, undo: { fence: Fence | null; recorded: boolean; paused: boolean; savedConfig: string | null; pgbouncer: PgBouncerAdmin | null }): Promise<void> {
    const { settings, status, log } = this.deps;
    const c = settings.cutover;
    const problems: string[] = [];
    await this.step(state, 'rollback', ROLLBACK_TIMEOUT_MS, async () => {
      const done: string[] = [];
      if (undo.savedConfig !== null && c.pgbouncerConfig && undo.pgbouncer) {
        try {
          await restoreFile(c.pgbouncerConfig, undo.savedConfig);
          await undo.pgbouncer.reload(ROLLBACK_TIMEOUT_MS / 3);
          done.push('PgBouncer entry restored');
        } catch (err) {
          problems.push(`PgBouncer config not restored (${describeError(err)}); put back ${c.pgbouncerConfig} and RELOAD`);
        }
      }
      if (undo.fence) {
        const fence = undo.fence;
        let lastErr: unknown = null;
        for (let attempt = 0; attempt < 5; attempt++) {
          const client = await connect(settings.source, 'source').catch((err: unknown) => ((lastErr = err), null));
          if (client) {
            try {
              const { rows: [now] } = await client.query<{ at: string }>('SELECT clock_timestamp()::text AS at');
              await unfenceSource(client, fence);
              lastErr = null;
              // Only those opened while fenced: not the ones opened writable from now on.
              const ended = fence.since ? await endReadOnlySessions(client, fence.since, now!.at).catch(() => 0) : 0;
              if (ended > 0) done.push(`${ended} session(s) opened read-only during the fence ended`);
              break;
            } catch (err) {
              lastErr = err;
            } finally {
              await client.end().catch(() => {});
            }
          }
          await pause(500 * (attempt + 1));
        }
        if (lastErr) {
          problems.push(`source is still read-only (${describeError(lastErr)}); run ALTER DATABASE ${ident(fence.database)} RESET default_transaction_read_only and ALTER ROLE ... IN DATABASE ${ident(fence.database)} RESET default_transaction_read_only for ${fence.roles.join(', ')}`);
        } else {
          done.push('source writable again');
          if (undo.recorded) await this.forgetFence();
        }
      }
      if (undo.paused && undo.pgbouncer) {
        try {
          await undo.pgbouncer.resume(ROLLBACK_TIMEOUT_MS / 3);
          done.push(`PgBouncer ${c.pgbouncerDatabase} resumed on the source`);
        } catch (err) {
          problems.push(`PgBouncer not resumed (${describeError(err)}); run RESUME ${c.pgbouncerDatabase} on its admin console`);
        }
      }
      if (problems.length > 0) throw new PgferryError(ErrorCodes.CUTOVER, problems.join('; '));
      return `${done.join(', ') || 'nothing to undo'}; streaming continues`;
    }).catch(() => {});
    state.state = problems.length > 0 ? 'failed' : 'rolled back';
    if (status.phase === 'cutover') status.phase = 'streaming';
    status.lastError = problems.length > 0 ? `cutover rollback incomplete: ${problems.join('; ')}` : null;
    log[problems.length > 0 ? 'error' : 'warn']({ reason: state.error, problems }, problems.length > 0 ? 'cutover rollback incomplete' : 'cutover rolled back: the source takes writes again and streaming continues');
  }

  /** Deletes the fence record after a rollback restored the source (a leftover would only restore the same settings again). */
  private async forgetFence(): Promise<void> {
    const { settings, log } = this.deps;
    const client = await connect(settings.target, 'target').catch(() => null);
    try {
      if (!client) throw new Error('cannot connect to the target');
      await deleteFenceRecord(client, settings.slot);
    } catch (err) {
      log.warn({ err }, `could not delete the fence record after the rollback (harmless: the next start restores the same settings); run DELETE FROM pgferry.cutover_fence WHERE slot = '${settings.slot}' on the target`);
    } finally {
      await client?.end().catch(() => {});
    }
  }

  /** Step 5: chunked hashes (`full`) or row counts (`counts`) of every migrated table; tables that differ fail the step. */
  private async verifyStep(source: pg.Client, target: pg.Client, tables: SourceTable[]): Promise<string> {
    const { settings } = this.deps;
    const mode = settings.cutover.verify;
    if (mode === 'none') return 'skipped (cutoverVerify = none)';
    if (mode === 'counts') {
      const differing: string[] = [];
      for (const t of tables) {
        const count = async (c: pg.Client): Promise<string> => (await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${qualified(t)}`)).rows[0]!.n;
        const [a, b] = [await count(source), await count(target)];
        if (a !== b) differing.push(`${tableKey(t)} (${a} rows on the source, ${b} on the target)`);
      }
      if (differing.length > 0) throw new PgferryError(ErrorCodes.CUTOVER, `verify: ${differing.slice(0, 5).join(', ')} differ; run pgferry verify for details`);
      return `row counts of ${tables.length} table(s) match`;
    }
    const report = await verify({ source: settings.source, target: settings.target, tables: settings.tables });
    const bad = report.tables.filter((t) => !t.identical);
    if (bad.length > 0) {
      const what = bad.slice(0, 5).map((t) => t.problem ?? `${t.table} (${t.rows.length}${t.more ? '+' : ''} row(s) differ, ${t.sourceRows} vs ${t.targetRows} rows)`);
      throw new PgferryError(ErrorCodes.CUTOVER, `verify: ${what.join(', ')}; run pgferry verify for details`);
    }
    const schemaNote = report.schema.missing.length + report.schema.differing.length > 0 ? `; schema notes: ${[...report.schema.missing, ...report.schema.differing].slice(0, 3).join(', ')}` : '';
    return `${report.tables.length} table(s) identical (chunked hashes)${schemaNote}`;
  }

  /** Runs one step with a timeout, recording it in the state, the metrics and the log. */
  private async step(state: CutoverState, name: CutoverStepName, timeoutMs: number, fn: (signal: AbortSignal) => Promise<string>): Promise<void> {
    const { log, metrics } = this.deps;
    const record: CutoverStep = { name, startedAt: new Date().toISOString(), durationSeconds: null, outcome: 'running', detail: null };
    state.steps.push(record);
    const began = performance.now();
    const abort = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const work = fn(abort.signal);
    work.catch(() => {}); // raced below
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        abort.abort();
        // Steps that poll see the abort and throw their own, more precise error first. One still
        // running a statement is waited for (a while): a rollback must not race its last change.
        const settled = work.then(
          () => {},
          () => {},
        );
        void Promise.race([settled, new Promise((r) => setTimeout(r, STEP_SETTLE_MS).unref())]).then(() =>
          reject(new PgferryError(ErrorCodes.CUTOVER, `cutover step ${name} timed out after ${timeoutMs / 1000} s; retry${STEP_TIMEOUT_SETTING[name] ? `, or raise ${STEP_TIMEOUT_SETTING[name]}` : ''}`)),
        );
      }, timeoutMs);
    });
    try {
      record.detail = await Promise.race([work, timeout]);
      record.outcome = 'ok';
    } catch (err) {
      record.outcome = 'failed';
      record.detail = describeError(err);
      throw err;
    } finally {
      clearTimeout(timer);
      abort.abort();
      record.durationSeconds = round((performance.now() - began) / 1000);
      metrics.cutoverStepDuration.set({ step: name }, record.durationSeconds);
      log.info({ step: name, outcome: record.outcome, durationSeconds: record.durationSeconds, detail: record.detail }, `cutover step ${name} ${record.outcome}`);
    }
  }
}

function round(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}

function pause(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function connect(config: pg.ClientConfig, side: 'source' | 'target'): Promise<pg.Client> {
  const client = new pg.Client({ ...config, options: [config.options, SESSION_OPTIONS].filter(Boolean).join(' '), application_name: 'pgferry cutover' });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    throw new PgferryError(ErrorCodes.CUTOVER, `${side}: cannot connect to ${config.host ?? 'localhost'}:${config.port ?? 5432}/${config.database ?? ''} (${describeError(err)}); check the server, then retry the cutover`, { cause: err });
  }
  return client;
}
