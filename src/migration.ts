import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Settings } from './config/settings.js';
import { PgferryError, ErrorCodes, PreflightError, SchemaError, describeError, isConnectionError } from './errors.js';
import type { Logger } from './observability/logger.js';
import { ERROR_KINDS, type Metrics, type Side } from './observability/metrics.js';
import { formatLsn, maxLsn, parseLsn, type Lsn } from './protocol/lsn.js';
import { cancelUntilEnded, connectClient, negotiateSsl, qualified, tableKey, withSessionOptions } from './pg/connection.js';
import { listSourceTables, type SourceTable } from './source/catalog.js';
import { preflightSource } from './source/preflight.js';
import { checkPublication, createSlotWithSnapshot, dropSlot, ensurePublication, readSlot, type SlotState } from './source/slot.js';
import { ReplicationStream, type StreamEvent } from './source/replication-stream.js';
import { TableRewrittenError, connectSnapshotReader, copyTables } from './snapshot/copy.js';
import { Applier, type QueuedCommit } from './apply/applier.js';
import { isSpreadConflict, Lanes, resolvePreparedShares, sharesUnderProgress } from './apply/lanes.js';
import { StreamedTransactions } from './apply/streamed.js';
import { preflightTarget } from './apply/preflight.js';
import { EarlyIndexBuilder, copySchemaPhase, finishSchemaWhileStreaming } from './schema/copy-schema.js';
import { undoRecordedFence } from './cutover/fence-record.js';
import { PgBouncerAdmin } from './cutover/pgbouncer.js';
import { INSTANCE_LOCK, beginSnapshotPhase, beginStreamingPhase, ensureStateSchema, markSchemaFinished, lockShares, readMigration, readTableCopies, recordConsistentPoint, resetTableCopies, unlockShares, type MigrationState, type TableCopy } from './apply/state-store.js';
import { withoutCopied } from './snapshot/already-copied.js';
import { copyEtaSeconds, type MigrationStatus } from './status.js';
import { estimateRows } from './source/estimates.js';
import { setUpDdlCapture } from './ddl/capture.js';
import { DDL_MESSAGE_PREFIX, decodeDdlMessage } from './ddl/ddl-message.js';

/**
 * Stop reading the stream when this many events or bytes wait, resume below a tenth: bounded
 * memory. Small on purpose: the socket holds the rest as compact bytes, while decoded events that
 * wait long enough to outlive two young-generation collections are copied into the old one (a
 * 10,000-event queue cost about a fifth more CPU per change in garbage collection).
 */
const QUEUE_HIGH = 1_000;
const QUEUE_HIGH_BYTES = 8 * 1024 * 1024;
/** With a group open and nothing queued, how long to wait for more transactions before committing it. */
const GROUP_LINGER_MS = 5;
/** The apply loop lets other I/O (the target's answers) run at least this often. */
const YIELD_MS = 2;
/** How often a status update goes to the source even when nothing moved (well under wal_sender_timeout). */
const STATUS_INTERVAL_MS = 5_000;
/** The target position of a group whose commit has not been answered yet: above every real LSN. */
const UNANSWERED: Lsn = 2n ** 64n;
/** How often the target's WAL flush position is read while committed groups are not yet known durable. */
const DURABLE_POLL_MS = 100;
/** How long a stop waits for the transaction in flight to commit before rolling it back instead. */
const STOP_GRACE_MS = 20_000;
/** How often copy progress is logged during the initial copy. */
const COPY_LOG_INTERVAL_MS = 10_000;
/** While the slot stays above the retention warning, the warning is repeated this often. */
const RETENTION_WARN_INTERVAL_MS = 10 * 60_000;
/** How often a run checks that it still holds the migration's lock on the target. */
const LOCK_CHECK_MS = 5_000;
/** How often the monitor looks for source tables created after the start (see unmigratedTables). */
const NEW_TABLES_CHECK_MS = 60_000;

/**
 * One migration from source to target: preflight, publication and slot, initial copy under the
 * slot's snapshot, then streaming apply until stopped. Restartable at any point: the target's
 * `pgferry.migration` row says where it stands.
 *
 * Confirmation invariant: the position confirmed to the slot is either the end LSN of a source
 * transaction committed on the target and flushed there (the apply session commits asynchronously;
 * a group counts once the target's WAL flush position passes its commit), or a position reached
 * while nothing was in flight (an empty transaction's end, or a keepalive's walEnd between
 * transactions) with every group before it flushed. Nothing received but not yet durable on the
 * target is ever confirmed.
 */
export class Migration {
  private stopping = false;
  private readonly aborted = new AbortController();
  private stream: ReplicationStream | null = null;
  private wake: (() => void) | null = null;
  private monitor: NodeJS.Timeout | null = null;
  private tables: SourceTable[] = [];
  private closeMonitor: () => Promise<void> = async () => {};
  /** A problem found outside the streaming loop (an invalidated slot) that ends the run. */
  private fatal: PgferryError | null = null;
  /** {@link run} has returned or thrown: background work of the run (foreign-key validation) gives up. */
  private runEnded = false;
  /** Set when a stop's grace period ran out: the transaction in flight is rolled back. */
  private abandoned = false;
  private applyTarget: pg.Client | null = null;
  /** A source transaction has begun and is not yet committed on the target. */
  private inFlight = false;
  /** Which side the current replication session's failure came from, when the error does not say. */
  private failingSide: Side = 'target';
  /**
   * Source transactions up to this commit LSN are applied one change at a time, in source order:
   * set when a batched group hit a constraint (see {@link Applier.strict}), cleared once applied.
   */
  private strictThrough: Lsn | null = null;
  /**
   * Source transactions up to this commit LSN are applied on the main session only: set when a
   * group spread over several sessions could not be (see {@link Lanes}), cleared once applied.
   */
  private oneSessionThrough: Lsn | null = null;
  /** The last replication session failed while a group spread over several sessions was open or committing. */
  private spreadFailed = false;
  /** The current replication session's apply sessions, and their helpers' connections. */
  private lanes: Lanes | null = null;
  private helperClients: pg.Client[] = [];
  /**
   * No group spreads while set: readers that need whole source transactions (foreign-key
   * validation) run only when no spread group is committing (its shares commit after its progress row).
   */
  private spreadHeld = false;
  /**
   * Ask the source to stream large transactions while they run (see {@link StreamedTransactions}).
   * Off for the rest of the process once one failed for a reason other than a lost connection: the
   * server then sends it whole at its commit, where every usual remedy (strict replay, skipping what
   * the target holds) applies.
   */
  private streamLarge = true;
  /** The current replication session's streamed transactions (for a forced stop). */
  private streamedTxns: StreamedTransactions | null = null;
  /** Why the current session's streamed transaction failed (null: none did). */
  private streamedFailure: unknown = null;
  /** During the initial copy: builds each copied table's indexes while the others copy. */
  private indexBuilder: EarlyIndexBuilder | null = null;
  /** Commit LSN of the last source transaction begun in the current replication session. */
  private lastBegun: Lsn | null = null;
  /** Per source relation OID, the consistent point of the snapshot its copy was read under (later than the slot's for a resumed copy). */
  private snapshotLsns = new Map<number, Lsn>();
  /** Settles when {@link run} has returned. */
  private idle: Promise<void> = Promise.resolve();
  /** Schema copy's last step, beside streaming (see {@link finishSchema}); settles, never rejects. */
  private finishing: Promise<void> = Promise.resolve();
  /** Backend of the target session {@link finishing} runs statements on. */
  private finishingPid: number | null = null;
  /** Source tables already warned about as created after the start (see {@link unmigratedTables}). */
  private readonly unmigratedWarned = new Set<string>();
  /** The target session holding this migration's advisory lock while `run` runs (see {@link holdInstanceLock}). */
  private lockSession: pg.Client | null = null;
  private lockKeeper: NodeJS.Timeout | null = null;
  /** The last lock operation: they run one at a time. */
  private lockOp: Promise<void> = Promise.resolve();
  /** Schema copy's last step succeeded earlier (recorded in the target): this start skips it. */
  private schemaFinished = false;

  constructor(
    private readonly settings: Settings,
    private readonly status: MigrationStatus,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  /** Runs until {@link stop}. Rejects only for problems a retry cannot fix (preflight, lost slot). */
  async run(): Promise<void> {
    let finished: () => void = () => {};
    this.idle = new Promise<void>((resolve) => (finished = resolve));
    const ticker = this.startTicker();
    try {
      await negotiateSsl(this.settings.source, this.settings.target);
      await this.runPhases();
    } catch (err) {
      this.metrics.errors.inc({ kind: errorKind(err, 'other') });
      throw err;
    } finally {
      this.runEnded = true;
      clearInterval(ticker);
      if (this.lockKeeper) clearInterval(this.lockKeeper);
      this.lockKeeper = null;
      await this.lockOp;
      const lock = this.lockSession;
      this.lockSession = null;
      lock?.removeAllListeners('end');
      await lock?.end().catch(() => {});
      finished();
    }
  }

  /**
   * Makes this process the only pgferry running the migration (its slot) on this target: a
   * session-level advisory lock, taken before anything is read or changed and held until `run`
   * ends. A second one would undo a cutover's fence, recopy tables the first is copying, or apply
   * changes twice. Checked again at each reconnect: a lock lost with its session (a target
   * restart) is taken again, or the run stops if another process has it by then. Also watched
   * while the run goes on: at once when the lock's session ends, and every
   * {@link LOCK_CHECK_MS} (see {@link keepInstanceLock}). Calls run one at a time (two sessions of
   * this process would refuse each other).
   */
  private holdInstanceLock(): Promise<void> {
    const next = this.lockOp.then(() => this.takeInstanceLock());
    this.lockOp = next.catch(() => {});
    return next;
  }

  /**
   * The lock's watch: taken again if its session was lost; if another process has it by then,
   * the run stops (the copy is abandoned as by a stop, streaming ends), since both would work on
   * the same migration. A connection problem is left to the next look.
   */
  private async keepInstanceLock(): Promise<void> {
    if (this.stopping || this.fatal) return;
    try {
      await this.holdInstanceLock();
    } catch (err) {
      if (!(err instanceof PreflightError) || this.stopping) return;
      this.log.error({ err }, 'lost the migration lock to another process; stopping');
      this.failFatal(err);
      this.aborted.abort();
    }
  }

  private async takeInstanceLock(): Promise<void> {
    if (this.lockSession) {
      try {
        await this.lockSession.query('SELECT 1');
        return;
      } catch {
        await this.lockSession.end().catch(() => {});
        this.lockSession = null;
      }
    }
    const { slot } = this.settings;
    const session = await connectClient(this.target(), 'target');
    try {
      const { rows } = await session.query<{ ok: boolean }>('SELECT pg_catalog.pg_try_advisory_lock($1::int4, pg_catalog.hashtext($2)) AS ok', [INSTANCE_LOCK, slot]);
      if (!rows[0]?.ok) {
        const { rows: holders } = await session.query<{ pid: number; since: string; host: string | null }>(
          `SELECT a.pid, to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ') AS since, host(a.client_addr) AS host
             FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid = $1::int4::oid
              AND l.objid::int8 = (pg_catalog.hashtext($2)::int8 & 4294967295)
              AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())`,
          [INSTANCE_LOCK, slot],
        );
        const h = holders[0];
        throw new PreflightError(
          `target: another pgferry is running migration ${slot} on this database${h ? ` (its session: pid ${h.pid}${h.host ? ` from ${h.host}` : ''}, since ${h.since})` : ''}; stop it first: two would copy or apply the same changes twice${h ? ` (if its host is gone, end that session: SELECT pg_terminate_backend(${h.pid}))` : ''}`,
        );
      }
      this.lockSession = session;
      session.on('end', () => void this.keepInstanceLock());
      if (!this.lockKeeper) {
        this.lockKeeper = setInterval(() => void this.keepInstanceLock(), LOCK_CHECK_MS);
        this.lockKeeper.unref();
      }
    } catch (err) {
      await session.end().catch(() => {});
      throw err;
    }
  }

  private async runPhases(): Promise<void> {
    try {
      await this.prepare();
    } catch (err) {
      if (this.fatal) throw this.fatal; // the copy was abandoned for it (another process took the migration)
      if (this.stopping) return; // stopped mid-copy: the next start resumes it
      throw err;
    }
    if (this.stopping) return;
    this.startMonitor();
    this.finishSchema();
    let delay = 1_000;
    while (!this.stopping) {
      const started = Date.now();
      try {
        await this.streamOnce();
        if (this.fatal) throw this.fatal;
      } catch (err) {
        if (this.fatal) throw this.fatal;
        if (this.stopping) break;
        if (err instanceof PreflightError) throw err;
        if (this.streamedFailure !== null && this.streamLarge) {
          this.streamLarge = false;
          this.streamedFailure = null;
          this.log.warn({ err }, 'a large transaction applied while it ran on the source failed; from now on large transactions are applied whole, after their commit');
          continue;
        }
        if (isSpreadConflict(err, this.spreadFailed && !isConnectionError(err)) && this.settings.applySessions > 1 && this.lastBegun !== null && (this.oneSessionThrough === null || this.lastBegun > this.oneSessionThrough)) {
          this.oneSessionThrough = this.lastBegun;
          this.metrics.spreadRetries.inc();
          this.log.info({ reason: describeError(err), through: formatLsn(this.lastBegun) }, 'a group applied on several sessions could not be split; applying it again on one session');
          continue;
        }
        if (isConstraintViolation(err) && this.lastBegun !== null && (this.strictThrough === null || this.lastBegun > this.strictThrough)) {
          // Batches reorder changes across tables: replay those transactions change by change (widening the
          // strict range when a later, batched transaction trips too; a failure within it is a real divergence).
          this.strictThrough = this.lastBegun;
          this.log.warn({ err, through: formatLsn(this.lastBegun) }, 'a batched statement hit a constraint; applying those transactions again one change at a time');
          continue;
        }
        const retryable = isConnectionError(err) || (err instanceof PgferryError && err.retryable);
        this.metrics.errors.inc({ kind: errorKind(err, 'apply') });
        this.metrics.reconnects.inc({ side: sideOf(err, this.failingSide) });
        this.status.lastError = describeError(err);
        if (!retryable) this.status.phase = 'failed';
        this.log.error({ err, retryInMs: delay }, retryable ? 'replication interrupted; reconnecting' : 'apply failed; retrying from the last committed position');
        if (Date.now() - started > 60_000) delay = 1_000;
        await this.sleep(delay);
        delay = Math.min(delay * 2, 30_000);
      }
    }
  }

  /**
   * Stops gracefully and resolves once the run has ended and its connections are closed. An
   * initial copy is abandoned (the next start keeps the tables copied and copies the rest). While streaming, the source transaction
   * in flight is applied, committed and its end confirmed to the slot first; if that takes longer
   * than `graceMs`, it is rolled back instead (never confirmed: the next start applies it again).
   */
  async stop(graceMs = STOP_GRACE_MS): Promise<void> {
    this.stopping = true;
    this.aborted.abort();
    if (this.monitor) clearInterval(this.monitor);
    this.wake?.();
    if (this.inFlight) this.log.info({ graceMs }, 'stop requested: finishing the source transaction in flight first');
    const force = setTimeout(() => {
      this.abandoned = true;
      if (this.status.phase === 'snapshot') this.log.warn({ graceMs }, 'the initial copy (or its schema step) is still finishing a statement; the next start copies the tables not yet copied (Ctrl-C again exits at once)');
      else this.log.warn({ graceMs }, 'the transaction in flight did not commit in time; rolling it back (the next start applies it again)');
      this.wake?.();
      void this.stream?.stop().catch(() => {});
      void this.applyTarget?.end().catch(() => {}); // unblocks a statement that hangs on the target
      for (const helper of this.helperClients) void helper.end().catch(() => {});
      this.streamedTxns?.terminate(); // ...also on a streamed transaction's session
    }, graceMs);
    try {
      await this.idle;
    } finally {
      clearTimeout(force);
    }
    await this.closeMonitor();
    await this.stopFinishing();
  }

  /**
   * Runs schema copy's last step ({@link finishSchemaWhileStreaming}: foreign-key validation,
   * ANALYZE) beside streaming, after the initial copy and at each start until it has succeeded.
   * Connection problems are retried; any other failure is kept in `status.schemaFinishing`, where
   * a cutover finds it. Never touches the applied or confirmed positions.
   */
  private finishSchema(): void {
    if (!this.settings.schemaCopy) return;
    const state: NonNullable<MigrationStatus['schemaFinishing']> = { state: this.schemaFinished ? 'done' : 'running', error: null };
    this.status.schemaFinishing = state;
    if (this.schemaFinished) return;
    this.finishing = (async () => {
      for (let delay = 1_000; !this.stopping && !this.runEnded && !this.fatal; delay = Math.min(delay * 2, 30_000)) {
        let source: pg.Client | null = null;
        let target: pg.Client | null = null;
        try {
          source = await connectClient(this.source(), 'source');
          target = await connectClient(this.target(), 'target');
          this.finishingPid = (target as unknown as { processID: number | null }).processID;
          const started = Date.now();
          const objects = await finishSchemaWhileStreaming({ source, target, tables: this.settings.tables, log: this.log, signal: this.aborted.signal, wholeTransactions: (run) => this.wholeTransactions(target!, run) });
          if (this.stopping) return;
          await markSchemaFinished(target, this.settings.slot);
          this.schemaFinished = true;
          state.state = 'done';
          if (objects > 0) this.log.info({ objects, ms: Date.now() - started }, 'schema copy: foreign keys validated and tables analyzed while streaming');
          return;
        } catch (err) {
          if (this.stopping || this.runEnded || this.fatal) return;
          if (!isConnectionError(err)) {
            state.state = 'failed';
            state.error = describeError(err);
            this.log.error({ err }, 'schema copy: the last step (foreign-key validation, ANALYZE) failed; a cutover is refused until it succeeds at a later start');
            return;
          }
          this.log.warn({ err, retryInMs: delay }, 'schema copy: the last step lost its connection; retrying');
        } finally {
          this.finishingPid = null;
          await source?.end().catch(() => {});
          await target?.end().catch(() => {});
        }
        await new Promise<void>((resolve) => {
          const done = (): void => {
            clearTimeout(t);
            this.aborted.signal.removeEventListener('abort', done);
            resolve();
          };
          const t = setTimeout(done, delay);
          this.aborted.signal.addEventListener('abort', done, { once: true });
        });
      }
    })();
  }

  /** Cancels the statement schema copy's last step is running and waits for the step to end. */
  private async stopFinishing(): Promise<void> {
    await cancelUntilEnded(() => connectClient(this.target(), 'target'), () => this.finishingPid, this.finishing);
  }

  /** Ends the run with `err` (a problem no retry can fix), stopping the replication session. */
  private failFatal(err: PgferryError): void {
    if (this.fatal || this.stopping) return;
    this.fatal = err;
    this.wake?.();
    void this.stream?.stop().catch(() => {});
  }

  /** Samples rates once a second; logs copy progress during the initial copy. */
  private startTicker(): NodeJS.Timeout {
    let lastLog = Date.now();
    const ticker = setInterval(() => {
      this.status.sample();
      if (this.status.phase !== 'snapshot' || Date.now() - lastLog < COPY_LOG_INTERVAL_MS) return;
      lastLog = Date.now();
      const tables = [...this.status.tables];
      for (const [table, t] of tables.filter(([, t]) => t.state === 'copying')) {
        const eta = copyEtaSeconds(this.status, table);
        this.log.info({ table, rowsCopied: t.rowsCopied, estimatedRows: this.status.estimatedRows.get(table) ?? null, etaSeconds: eta === null ? null : Math.round(eta) }, 'copying');
      }
      this.log.info({ copied: tables.filter(([, t]) => t.state === 'copied').length, tables: tables.length }, 'initial copy progress');
    }, 1_000);
    ticker.unref();
    return ticker;
  }

  private source(): pg.ClientConfig {
    return withSessionOptions(this.settings.source);
  }

  private target(): pg.ClientConfig {
    return withSessionOptions(this.settings.target);
  }

  /** Preflight, then either resume streaming or (re)do the initial copy. */
  private async prepare(): Promise<void> {
    const { slot, publication } = this.settings;
    const source = await connectClient(this.source(), 'source');
    const target = await connectClient(this.target(), 'target');
    this.status.connected.source = this.status.connected.target = true;
    try {
      await refuseSameDatabase(source, target);
      await this.holdInstanceLock();
      // A cutover that died between fence and switch left the source read-only: restore it before
      // anything else can fail (a preflight problem must not keep the applications read-only).
      const { pgbouncerAdmin, pgbouncerDatabase } = this.settings.cutover;
      await undoRecordedFence(this.source(), target, slot, this.log, pgbouncerAdmin && pgbouncerDatabase ? { database: pgbouncerDatabase, admin: new PgBouncerAdmin(pgbouncerAdmin, pgbouncerDatabase) } : undefined);
      const listed = await listSourceTables(source, this.settings.tables);
      if (listed.missing.length > 0) {
        throw new PreflightError(`source: table(s) ${listed.missing.map(tableKey).join(', ')} not found; check --tables (names are case-sensitive when quoted)`);
      }
      this.tables = listed.tables;
      await preflightTarget(target, [], { mustBeEmpty: false, applySessions: this.settings.applySessions });
      await ensureStateSchema(target).catch((err: unknown) => {
        throw new PreflightError(`target: cannot create pgferry's state schema "pgferry" (${describeError(err)}); grant CREATE on the target database to pgferry's role`);
      });
      const state = await readMigration(target, slot);
      if (state?.phase === 'done') {
        throw new PreflightError(`target: migration ${slot} was cut over: the applications use the target, and nothing more is streamed into it; pgferry cleanup drops what is left (the slot and publication on the source, pgferry's rows on the target)`);
      }
      await setUpDdlCapture(source, this.settings, this.log);
      const existing = await readSlot(source, slot);
      if (state?.phase === 'streaming') {
        if (!existing) throw new PreflightError(`source: replication slot ${slot} is gone, so changes since the last run are lost; start over with pgferry cleanup, then pgferry start`);
        if (existing.walStatus === 'lost') throw new PreflightError(lostSlotMessage(this.settings));
        // "Every table" means every table of the migration (its publication), not those created since.
        const added = await this.unmigratedTables(source);
        if (added.length > 0) {
          this.log.warn({ tables: added.map(tableKey) }, unmigratedMessage(added));
          for (const t of added) this.unmigratedWarned.add(tableKey(t));
          this.tables = this.tables.filter((t) => !added.some((a) => a.oid === t.oid));
        }
        await allOf(preflightSource(source, this.tables, { slotExists: true, log: this.log }), preflightTarget(target, this.tables, { mustBeEmpty: false, shapeFromStream: this.settings.captureDdl }));
        await checkPublication(source, publication, this.tables);
        this.status.appliedLsn = state.appliedLsn;
        for (const t of await readTableCopies(target, slot)) this.status.tables.set(tableKey(t), { state: 'copied', rowsCopied: t.rows, bytesCopied: 0 });
        this.snapshotLsns = await this.readSnapshotLsns(target);
        this.schemaFinished = state.schemaFinished;
        this.log.info({ slot, appliedLsn: state.appliedLsn === null ? null : formatLsn(state.appliedLsn) }, 'resuming streaming');
        return;
      }
      if (!state && existing) {
        throw new PreflightError(`source: replication slot ${slot} already exists but this target has no pgferry state for it (another migration?); choose another --slot, or drop it with SELECT pg_drop_replication_slot('${slot}')`);
      }
      // The source's problems before pre-data writes anything to the target (with schema copy off, both sides' at once, below).
      if (this.settings.schemaCopy) await preflightSource(source, this.tables, { slotExists: Boolean(existing), log: this.log, publication });
      // Schema copy, pre-data: while the initial copy is not done (it skips what exists), before the target's table checks.
      const schema = this.settings.schemaCopy
        ? await copySchemaPhase({ source, target, tables: this.settings.tables, phase: 'pre-data', log: this.log }).catch((err: unknown) => {
            // An interrupted copy whose source tables changed meanwhile: the tables it kept (or made)
            // no longer match, and dropping just one would lose the rows recorded as copied.
            if (!(err instanceof SchemaError) || state?.phase !== 'snapshot') throw err;
            const conflicts = err.message.split('\n');
            throw new PreflightError(
              `source: the schema changed while the initial copy was interrupted (${conflicts[0]!.replace(/; change or drop it on the target.*$/, '')}${conflicts.length > 1 ? `, and ${conflicts.length - 1} more` : ''}); the copy cannot be resumed: drop the migrated tables on the target (or recreate the target database), run pgferry cleanup, then pgferry start`,
            );
          })
        : null;
      // Each table's indexes and keys are built as soon as its copy is done, while the others copy.
      this.indexBuilder = schema ? new EarlyIndexBuilder(schema, () => connectClient(this.target(), 'target'), this.log) : null;
      await allOf(this.settings.schemaCopy ? Promise.resolve() : preflightSource(source, this.tables, { slotExists: Boolean(existing), log: this.log, publication }), preflightTarget(target, this.tables, { mustBeEmpty: !state }));
      this.status.phase = 'snapshot';
      for (const t of this.tables) this.status.tables.set(tableKey(t), { state: 'pending', rowsCopied: 0, bytesCopied: 0 });
      for (const [table, rows] of await estimateRows(source, this.tables)) this.status.estimatedRows.set(table, rows);
      const resume = state && existing ? await this.resumableCopy(source, target, state, existing) : null;
      let consistentPoint: Lsn;
      if (resume) {
        consistentPoint = resume.consistentPoint;
        const copied = new Map(resume.copied.map((t) => [tableKey(t), t]));
        for (const t of copied.values()) this.status.tables.set(tableKey(t), { state: 'copied', rowsCopied: t.rows, bytesCopied: 0 });
        const rest = this.tables.filter((t) => !copied.has(tableKey(t)));
        this.log.info({ slot, consistentPoint: formatLsn(consistentPoint), copied: copied.size, remaining: rest.length }, 'resuming the initial copy: tables already copied are kept');
        if (rest.length > 0) await this.copyUnderNewSnapshot(source, target, rest, 'resume');
      } else {
        await beginSnapshotPhase(target, slot, this.tables);
        consistentPoint = await this.copyUnderNewSnapshot(source, target, this.tables, state ? 'redo' : 'fresh');
      }
      // Post-data (indexes, constraints, foreign keys, triggers, views, ...) once the rows are in, before streaming;
      // its first run of parallel builds starts beside the early builder's last one.
      const handedOver = this.indexBuilder?.handOver() ?? undefined;
      if (this.settings.schemaCopy) await copySchemaPhase({ source, target, tables: this.settings.tables, phase: 'post-data', log: this.log, parallel: this.settings.copyWorkers, connect: () => connectClient(this.target(), 'target'), handedOver });
      await beginStreamingPhase(target, slot, consistentPoint);
      this.snapshotLsns = await this.readSnapshotLsns(target);
      this.status.appliedLsn = consistentPoint;
      this.log.info({ consistentPoint: formatLsn(consistentPoint) }, 'initial copy complete; streaming');
    } finally {
      this.status.connected.source = this.status.connected.target = false;
      await this.indexBuilder?.close();
      this.indexBuilder = null;
      await source.end().catch(() => {});
      await target.end().catch(() => {});
    }
  }

  /**
   * Whether an interrupted initial copy can go on where it stopped: the slot still sits at the
   * consistent point recorded for it (nothing was confirmed: streaming never started), its
   * publication and the copy's tables are unchanged. Returns the tables already copied.
   */
  private async resumableCopy(source: pg.Client, target: pg.Client, state: MigrationState, slot: SlotState): Promise<{ consistentPoint: Lsn; copied: TableCopy[] } | null> {
    const c = state.consistentPoint;
    if (state.phase !== 'snapshot' || c === null || slot.walStatus === 'lost' || slot.confirmedFlush !== c) return null;
    const published = await checkPublication(source, this.settings.publication, this.tables).then(() => true, () => false);
    const copies = await readTableCopies(target, this.settings.slot);
    const wanted = new Set(this.tables.map(tableKey));
    if (!published || copies.length !== wanted.size || copies.some((t) => !wanted.has(tableKey(t)))) return null;
    return { consistentPoint: c, copied: copies.filter((t) => t.copied) };
  }

  /**
   * Copies `tables` under a newly exported snapshot and returns its consistent point; a table
   * truncated or rewritten as the copy starts makes it try again with another snapshot.
   * `fresh`/`redo`: the migration's slot is created (`redo`: dropped first, and every target table
   * emptied) and its consistent point recorded before any table is copied. `resume`: the slot
   * stays; the tables' target rows are removed and a temporary slot exports the snapshot, whose
   * consistent point each table stores (streaming skips what that copy already holds).
   */
  private async copyUnderNewSnapshot(source: pg.Client, target: pg.Client, tables: SourceTable[], mode: 'fresh' | 'redo' | 'resume'): Promise<Lsn> {
    const { slot, publication } = this.settings;
    for (let attempt = 1; ; attempt++) {
      if (mode === 'resume') {
        await emptyTables(target, tables);
        await resetTableCopies(target, slot, tables);
      } else if (mode === 'redo' || attempt > 1) {
        if (attempt === 1) this.log.warn({ slot }, 'the previous initial copy cannot be resumed; starting it again from scratch');
        await dropSlot(source, slot);
        await emptyTables(target, tables);
      }
      if (mode !== 'resume') await ensurePublication(source, publication, tables);
      const reader = await connectSnapshotReader(this.source());
      const name = mode === 'resume' ? `pgferry_resume_${randomBytes(6).toString('hex')}` : slot;
      const exported = await createSlotWithSnapshot(this.source(), name, { temporary: mode === 'resume' }).catch(async (err: unknown) => {
        await reader.end().catch(() => {});
        // Preflight counted the migration's own slot as there: a resumed copy needs one more, for a while.
        if (mode === 'resume' && (err as { code?: string }).code === '53400') {
          throw new PreflightError(`source: all replication slots are in use, and resuming the initial copy needs one more for a moment (a temporary one); raise max_replication_slots (restart needed) or drop an unused slot, then start again`);
        }
        throw err;
      });
      try {
        const onLocked = mode === 'resume' ? undefined : () => recordConsistentPoint(target, slot, exported.consistentPoint);
        this.log.info({ slot: name, consistentPoint: formatLsn(exported.consistentPoint), tables: tables.length }, 'snapshot exported; copying tables');
        await copyTables({ source: reader, sourceConfig: this.source(), workers: this.settings.copyWorkers, target: this.target(), snapshotName: exported.snapshotName, snapshotLsn: exported.consistentPoint, tables, slot, progress: this.status.tables, log: this.log, signal: this.aborted.signal, onLocked, onTableCopied: (t) => this.indexBuilder?.tableCopied(t) });
        return exported.consistentPoint;
      } catch (err) {
        if (!(err instanceof TableRewrittenError) || this.stopping) throw err;
        // A table truncated often (a queue) can win the race several times: keep trying, spaced out and
        // jittered so a periodic TRUNCATE does not keep landing in the window; stop() ends the wait.
        this.log.warn({ tables: err.tables, attempt }, `${err.message}${attempt >= 10 ? ' (pgferry keeps trying: a table truncated this often may need its writes paused for the copy to start)' : ''}`);
        for (const t of tables) this.status.tables.set(tableKey(t), { state: 'pending', rowsCopied: 0, bytesCopied: 0 });
      } finally {
        await exported.release().catch(() => {});
      }
      if (!this.stopping) await this.sleep(Math.min(100 * attempt, 2_000) * (0.5 + Math.random()));
      if (this.stopping) throw new PgferryError(ErrorCodes.COPY, 'stopped while starting the initial copy');
    }
  }

  /** The consistent point each table was copied under, by source relation OID (see {@link withoutCopied}). */
  private async readSnapshotLsns(target: pg.Client): Promise<Map<number, Lsn>> {
    const oids = new Map(this.tables.map((t) => [tableKey(t), t.oid]));
    const out = new Map<number, Lsn>();
    for (const t of await readTableCopies(target, this.settings.slot)) {
      const oid = oids.get(tableKey(t));
      if (oid !== undefined && t.snapshotLsn !== null) out.set(oid, t.snapshotLsn);
    }
    return out;
  }

  /** One replication session: runs until the connection drops, apply fails, or stop. */
  private async streamOnce(): Promise<void> {
    this.spreadFailed = false;
    this.failingSide = 'target';
    this.streamedFailure = null;
    const target = await connectClient(this.target(), 'target');
    this.applyTarget = target;
    const main = new Applier(target, this.settings.slot, this.log, this.settings.schemaCopy);
    const helperClients: pg.Client[] = [];
    this.helperClients = helperClients;
    const applier = new Lanes(main, this.settings.slot, () => this.spreadHeld);
    this.lanes = applier;
    const streamed = new StreamedTransactions(() => connectClient(this.target(), 'target'), applier, this.settings.slot, this.log, this.settings.schemaCopy);
    this.streamedTxns = streamed;
    const queue = new Fifo<StreamEvent>();
    let paused = false;
    let ended = false;
    let timer: NodeJS.Timeout | null = null;
    let durablePoll: NodeJS.Timeout | null = null;
    try {
      await this.holdInstanceLock();
      for (let n = 1; n < this.settings.applySessions; n++) {
        const helper = await connectClient(this.target(), 'target');
        helperClients.push(helper);
        applier.addSession(new Applier(helper, this.settings.slot, this.log, this.settings.schemaCopy));
      }
      await applier.init();
      // Read and settled under the shares lock: no other run is between a spread group's progress row and its shares.
      await lockShares(target, this.settings.slot);
      // The previous session's last commit may still be running on the target: wait for it, or a group would apply twice.
      const state = await readMigration(target, this.settings.slot, { waitForWriters: true });
      if (!state?.appliedLsn) throw new PreflightError(`target: pgferry state for slot ${this.settings.slot} is missing; start over with pgferry cleanup, then pgferry start`);
      let applied: Lsn = state.appliedLsn;
      // Shares of a group spread over several sessions that an interrupted run prepared but did not commit.
      await resolvePreparedShares(target, this.settings.slot, applied, this.log);
      await unlockShares(target, this.settings.slot);
      this.status.connected.target = true;
      // Large transactions are applied while they run, unless turned off, a resumed copy's tables
      // still need each change's commit LSN (withoutCopied), or one failed in this process.
      const streaming = this.settings.streamLargeTransactions && this.streamLarge && [...this.snapshotLsns.values()].every((l) => l <= applied);
      const stream = new ReplicationStream(this.source(), this.settings.slot, this.settings.publication, this.log, this.settings.captureDdl, streaming);
      this.stream = stream;
      const slot = await this.checkSlot();
      // What the slot already has is confirmable (it may be past `applied`: idle positions are not stored).
      let confirmable: Lsn = slot.confirmedFlush ?? applied;
      /**
       * Committed groups not yet known to be flushed on the target (the apply session commits
       * asynchronously), oldest first: the source position each makes confirmable, and the target
       * WAL position that makes it durable.
       */
      const undurable: { source: Lsn; target: Lsn }[] = [];
      const durableUpTo = (flushed: Lsn): void => {
        while (undurable.length > 0 && undurable[0]!.target <= flushed) confirmable = maxLsn(confirmable, undurable.shift()!.source);
      };
      /** A source position reached with nothing in flight: confirmable once every earlier group is durable. */
      const reached = (lsn: Lsn): void => {
        const last = undurable[undurable.length - 1];
        if (last) last.source = maxLsn(last.source, lsn);
        else confirmable = maxLsn(confirmable, lsn);
      };
      // `applied` was read committed, but perhaps not yet flushed (an asynchronous commit just before a restart).
      undurable.push({ source: applied, target: (await applier.walPositions()).inserted });
      // Streaming held back for a resumed copy's tables: once the target holds the positions their
      // snapshots were read at, this session ends between transactions and the next one streams.
      const streamFrom = !streaming && this.settings.streamLargeTransactions && this.streamLarge && this.snapshotLsns.size > 0 ? [...this.snapshotLsns.values()].reduce(maxLsn) : null;
      let restart = false;
      // A reconnect during or after a cutover leaves its phase alone.
      if (this.status.phase !== 'failed' && this.status.phase !== 'cutover' && this.status.phase !== 'done') this.status.phase = 'streaming';
      let lastSent = 0;
      /** The position last reported to the source. */
      let sentLsn: Lsn = -1n;
      this.status.appliedLsn = applied;
      const confirm = (force: boolean): void => {
        if (!force && Date.now() - lastSent < 1_000) return;
        stream.confirm(confirmable);
        lastSent = Date.now();
        sentLsn = confirmable;
        this.status.confirmedLsn = confirmable;
      };

      let queuedBytes = 0;
      /** Where this replication session starts: a streamed transaction that began before it may be one the target holds. */
      const startLsn = applied;
      const running = stream.run(startLsn, (e) => {
        if (e.kind === 'message' && e.message.tag === 'begin') this.status.pendingCommits.push(pgTimestampToMs(e.message.commitTime));
        queue.push(e);
        queuedBytes += e.kind === 'message' ? e.bytes : 0;
        if (!paused && (queue.length >= QUEUE_HIGH || queuedBytes >= QUEUE_HIGH_BYTES)) {
          paused = true;
          stream.pause();
        }
        this.wake?.();
      });
      running.catch(() => {}).finally(() => {
        ended = true;
        this.wake?.();
      });
      timer = setInterval(() => confirm(true), STATUS_INTERVAL_MS);
      // Groups become durable when the target's WAL writer flushes them (within a few wal_writer_delay).
      let polling = false;
      durablePoll = setInterval(() => {
        if (polling || undurable.length === 0) return;
        polling = true;
        applier
          .walPositions()
          .then(({ flushed }) => {
            durableUpTo(flushed);
            confirm(queue.length === 0);
          })
          .catch(() => {}) // the apply session is failing or closing: the loop reports why
          .finally(() => (polling = false));
      }, DURABLE_POLL_MS);
      this.status.connected.source = true;

      let inTransaction = false;
      let skipping = false;
      /** The transaction being received wrote to a published table (see MigrationStatus.lastWriteCommitLsn). */
      let writes = false;
      /** Streamed transactions (top-level xid) that wrote; the one of the current block. */
      const streamedWrites = new Set<number>();
      let streamedXid: number | null = null;
      const wrote = (commitLsn: Lsn): void => {
        if (this.status.lastWriteCommitLsn === null || commitLsn > this.status.lastWriteCommitLsn) this.status.lastWriteCommitLsn = commitLsn;
      };
      /** Commit times of source transactions ended in the open group: applied, not yet durable. */
      const grouped: bigint[] = [];
      let groupStarted = 0;
      /** The last group's commit, queued on the target and not yet answered. */
      let committing: Promise<void> | null = null;
      /** A queued commit failed: the loop ends with it (nothing after it commits or is confirmed). */
      let commitFailure: unknown = null;
      /** Commits queued and not yet answered: work in flight, as much as an open group. */
      let unanswered = 0;
      /**
       * Commits the group. The commit is queued, not awaited (the next group is built while the
       * target runs it; at most one more waits behind it). Its position joins `undurable` at once
       * with an unknown target position, so nothing reached after it is confirmed before it is
       * committed and flushed. `durable` (a stop, or caught up with the source): the commit waits
       * for the target's WAL flush and is confirmed as soon as it is answered.
       */
      const commitGroup = async (durable = false): Promise<void> => {
        const done = await applier.commitGroup({ durable });
        if (done) await track(done, durable, grouped.splice(0));
      };
      /** Follows a queued commit (a group's, or a streamed transaction's) until the target answers; see commitGroup. */
      const track = async (done: QueuedCommit, durable: boolean, ended: bigint[]): Promise<void> => {
        const entry = { source: done.lsn, target: UNANSWERED };
        undurable.push(entry);
        const started = groupStarted;
        const current = done.committed.then(({ targetLsn, flushedLsn }) => {
          entry.target = targetLsn;
          applied = maxLsn(applied, done.lsn);
          if (streamFrom !== null && applied >= streamFrom && !restart) {
            restart = true;
            this.wake?.();
          }
          if (durable) durableUpTo(targetLsn);
          durableUpTo(flushedLsn);
          this.status.appliedLsn = applied;
          this.status.transactionsApplied += done.transactions;
          for (const c of done.counts.values()) this.status.changesApplied += c.insert + c.update + c.delete + c.truncate;
          this.metrics.transactionsApplied.inc(done.transactions);
          if (done.sessions > 1) this.metrics.spreadGroups.inc();
          this.metrics.applyBatchDuration.observe((performance.now() - started) / 1000);
          for (const [table, c] of done.counts) {
            for (const op of ['insert', 'update', 'delete', 'truncate'] as const) if (c[op] > 0) this.metrics.changesApplied.inc({ table, op }, c[op]);
          }
          for (const t of ended) this.transactionDone(t);
          if (this.status.phase === 'failed') this.status.phase = 'streaming';
          this.status.lastError = null;
          confirm(queue.length === 0); // at once when caught up, at most every second under load
        });
        unanswered++;
        current
          .catch((err: unknown) => {
            commitFailure ??= err;
            this.wake?.();
          })
          .finally(() => unanswered--);
        const previous = committing;
        committing = current;
        if (previous) await previous;
        if (durable) await current;
      };
      let yielded = performance.now();
      /** Events handled since the clock was last read (reading it for every event costs more than the event). */
      let sinceClock = 0;
      /** The WAL flush for this idle moment was requested (once per idle moment). */
      let flushedIdle = false;
      // A stop lets the transaction in flight finish (see stop()); between transactions it ends the loop at once.
      /** The streamed transactions' step in progress: if the loop fails in it, see {@link streamLarge}. */
      let streamedWork: Promise<unknown> | null = null;
      /** The loop ends: the session ended or failed, or a stop (or restart) found no transaction in flight. */
      const over = (): boolean => ended || this.fatal !== null || this.abandoned || commitFailure !== null || ((this.stopping || restart) && !inTransaction);
      try {
        while (!over()) {
          streamedWork = null;
          this.inFlight = inTransaction || applier.groupOpen || unanswered > 0;
          if (++sinceClock >= 16) {
            sinceClock = 0;
            if (performance.now() - yielded >= YIELD_MS) {
              // Applying a backlog rarely waits for anything, and microtasks never let I/O run: without
              // this the target's answers (and the next queued batch) would wait for the queue to empty.
              await new Promise((resolve) => setImmediate(resolve));
              yielded = performance.now();
            }
          }
          const event = queue.shift();
          if (!event) {
            if (applier.groupOpen && !inTransaction) {
              // Caught up with a group open: linger briefly for more transactions, then commit it.
              const more = await new Promise<boolean>((resolve) => {
                const t = setTimeout(() => resolve(false), GROUP_LINGER_MS);
                this.wake = () => {
                  this.wake = null;
                  clearTimeout(t);
                  resolve(true);
                };
              });
              // Caught up: commit durably, so the position is confirmed now rather than after the
              // next WAL writer round and durability poll (lag and a cutover's drain see it at once).
              if (!more && queue.length === 0) await commitGroup(true);
              continue;
            }
            if (!inTransaction && !applier.groupOpen && undurable.length > 0 && !flushedIdle) {
              // Caught up behind groups committed asynchronously: flush them now, so their positions
              // are confirmed at once (a cutover's drain waits for exactly this).
              flushedIdle = true;
              durableUpTo(await applier.flushWal());
              confirm(true);
              continue;
            }
            await new Promise<void>((resolve) => {
              // A wake-up that came while nothing waited (the yield above) is gone: whatever it
              // signalled that ends the loop is checked here, before waiting for the next one.
              if (over()) {
                resolve();
                return;
              }
              this.wake = () => {
                this.wake = null; // one wake-up per wait: events arriving while the loop runs cost nothing here
                resolve();
              };
            });
            continue;
          }
          flushedIdle = false;
          queuedBytes -= event.kind === 'message' ? event.bytes : 0;
          if (paused && queue.length <= QUEUE_HIGH / 10 && queuedBytes <= QUEUE_HIGH_BYTES / 10) {
            paused = false;
            stream.resume();
          }
          if (event.kind === 'keepalive') {
            if (!inTransaction && applier.groupOpen && queue.length === 0) await commitGroup(true);
            // Between transactions, with nothing uncommitted, everything before walEnd is applied or irrelevant to us.
            if (!inTransaction && !applier.groupOpen) reached(event.walEnd);
            // Caught up, the server sends one keepalive and waits for the answer before it sends
            // another: answer at once if the position moved (lag and a cutover's drain wait for it).
            confirm(event.replyRequested || (queue.length === 0 && confirmable > sentLsn));
            continue;
          }
          const m = event.message;
          switch (m.tag) {
            case 'begin':
              inTransaction = true;
              writes = false;
              this.lastBegun = m.finalLsn;
              if (this.strictThrough !== null && m.finalLsn > this.strictThrough && applied > this.strictThrough) this.strictThrough = null;
              applier.strict = this.strictThrough !== null && m.finalLsn <= this.strictThrough;
              if (this.oneSessionThrough !== null && m.finalLsn > this.oneSessionThrough && applied > this.oneSessionThrough) this.oneSessionThrough = null;
              applier.spreadable = this.oneSessionThrough === null || m.finalLsn > this.oneSessionThrough;
              if (!applier.groupOpen) groupStarted = performance.now();
              // The server may resend a transaction that ends at or before what the target holds.
              skipping = m.finalLsn < applied;
              break;
            case 'relation':
              if (m.xid !== undefined) streamed.relation(m);
              else applier.relation(m);
              break;
            case 'insert':
            case 'update':
            case 'delete':
            case 'truncate': {
              if (m.xid !== undefined) {
                if (streamedXid !== null) streamedWrites.add(streamedXid);
                await (streamedWork = streamed.change(m));
                break;
              }
              writes = true;
              // A table copied by a resumed copy already holds the changes committed before its snapshot.
              const change = skipping ? null : withoutCopied(m, this.lastBegun ?? 0n, this.snapshotLsns);
              if (change) {
                const waiting = applier.change(change); // usually nothing to wait for: no microtask per row
                if (waiting) await waiting;
              }
              break;
            }
            case 'commit': {
              inTransaction = false;
              if (writes) wrote(m.commitLsn);
              if (skipping) {
                skipping = false;
                this.transactionDone(m.commitTime);
                break;
              }
              if (applier.endTransaction(m.endLsn)) {
                // Several source transactions share one target commit: fewer round trips and fsyncs.
                grouped.push(m.commitTime);
                if (applier.groupDue() || this.stopping) await commitGroup(this.stopping); // a stop commits synchronously
              } else {
                // Nothing to apply and nothing uncommitted before it: its end is safe to confirm.
                this.transactionDone(m.commitTime);
                reached(m.endLsn);
                confirm(queue.length === 0);
              }
              break;
            }
            case 'message':
              // Captured DDL (src/ddl/), at its place among the rows of the source transaction.
              if (!skipping && this.settings.captureDdl && m.prefix === DDL_MESSAGE_PREFIX) {
                const ddl = decodeDdlMessage(m.content, this.settings.publication);
                if (ddl && m.xid !== undefined) {
                  if (streamedXid !== null) streamedWrites.add(streamedXid);
                  await (streamedWork = streamed.ddl(ddl));
                } else if (ddl) {
                  writes = true;
                  await applier.ddl(ddl);
                }
              }
              break;
            case 'streamStart':
              // The block may change rows the open group wrote: commit the group and wait for it, so
              // the streamed session sees them and never waits for a lock the group holds.
              if (applier.groupOpen) await commitGroup();
              await committing;
              // Its first change before this session's start (or unknown, 0: the server leaves the
              // position out when an Origin message follows) makes it suspect.
              await (streamedWork = streamed.start(m.xid, m.firstSegment, this.strictThrough !== null, (event.at ?? startLsn) < startLsn));
              streamedXid = m.xid;
              break;
            case 'streamStop':
              streamedXid = null;
              streamed.stop();
              this.status.largeTransactions = streamed.summary();
              break;
            case 'streamCommit': {
              // Every transaction that committed before it is in the main session's groups: they
              // must be committed (answered) first. Otherwise its commit, on an idle session, could
              // store its end LSN before them, and a crash or a failed group would skip them.
              if (applier.groupOpen) await commitGroup();
              await committing;
              this.status.pendingCommits.push(pgTimestampToMs(m.commitTime));
              if (streamedWrites.delete(m.xid)) wrote(m.commitLsn);
              const done = await (streamedWork = streamed.commit(m.xid, m.endLsn, m.commitLsn < applied));
              this.status.largeTransactions = streamed.summary();
              if (done) {
                done.committed.catch((err: unknown) => {
                  if (!isConnectionError(err)) this.streamedFailure ??= err;
                });
                groupStarted = performance.now();
                await track(done, false, [m.commitTime]);
                // What comes next runs on the main session and may touch its rows (or shape, after
                // captured DDL): they must be committed first.
                await committing;
              } else {
                this.transactionDone(m.commitTime);
                reached(m.endLsn);
              }
              break;
            }
            case 'streamAbort':
              if (m.xid === m.subXid) streamedWrites.delete(m.xid);
              await (streamedWork = streamed.abort(m.xid, m.subXid));
              this.status.largeTransactions = streamed.summary();
              break;
            default:
              break; // origin, type: nothing to apply
          }
        }
      } catch (err) {
        if (streamedWork !== null && !isConnectionError(err)) this.streamedFailure = err;
        throw err;
      }
      if (commitFailure !== null) throw commitFailure;
      if ((this.stopping || restart) && !ended && !this.abandoned && !this.fatal) {
        await commitGroup(true); // a synchronous commit: every group before it is flushed too
        await committing;
        for (const deadline = Date.now() + 2_000; undurable.length > 0 && Date.now() < deadline; await this.sleep(20)) durableUpTo((await applier.walPositions()).flushed);
        confirm(true); // everything committed so far, including the transaction that was in flight
        const where = { appliedLsn: formatLsn(applied), confirmedLsn: formatLsn(confirmable) };
        if (this.stopping) this.log.info(where, 'stopped between transactions; the last committed position is confirmed');
        else this.log.info(where, "the resumed copy's tables are caught up: reconnecting to apply large transactions while they run");
      }
      this.failingSide = 'source';
      if (ended && !this.stopping) await running; // surfaces why the stream ended
    } catch (err) {
      this.spreadFailed = applier.spreadInvolved; // read before the rollback below resets it
      throw err;
    } finally {
      if (timer) clearInterval(timer);
      if (durablePoll) clearInterval(durablePoll);
      this.inFlight = false;
      this.status.connected.source = this.status.connected.target = false;
      // Received but unapplied transactions are sent again; lag keeps counting from the oldest.
      const oldest = this.status.pendingCommits[0];
      if (oldest !== undefined) this.status.unappliedSince = Math.min(this.status.unappliedSince ?? oldest, oldest);
      this.status.pendingCommits.length = 0;
      this.applyTarget = null;
      const opened = this.stream;
      this.stream = null;
      await opened?.stop().catch(() => {});
      // The main session first: a streamed session's rollback must not wait behind its locks.
      await applier.rollback().catch(() => {});
      await streamed.closeAll();
      this.streamedTxns = null;
      this.status.largeTransactions = streamed.summary();
      await target.end().catch(() => {});
      for (const helper of helperClients) await helper.end().catch(() => {});
    }
  }

  /**
   * Runs `read` while no group spread over several sessions commits (no new one spreads, those
   * spread before have committed): a reader then never sees a progress row before all of its
   * group's rows, which a spread group commits after it (see {@link Lanes}).
   */
  private async wholeTransactions<T>(target: pg.Client, read: () => Promise<T>): Promise<T> {
    this.spreadHeld = true;
    try {
      // Also shares an interrupted session left prepared under the progress the reader would see (a
      // reader cannot see a progress row of shares above it), until a start settles them. A plain
      // timer: this runs beside the apply loop, whose wake-up this.sleep() would take.
      const stopped = (): boolean => this.stopping || this.runEnded || this.fatal !== null;
      while (!stopped() && (this.lanes?.spreadInvolved || (await sharesUnderProgress(target, this.settings.slot)))) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      if (stopped()) throw new PgferryError(ErrorCodes.APPLY, 'stopped before foreign-key validation');
      return await read();
    } finally {
      this.spreadHeld = false;
    }
  }

  /** Reads the slot on a short-lived connection; a missing or invalidated slot is fatal (a retry cannot help). */
  private async checkSlot(): Promise<SlotState> {
    const { slot } = this.settings;
    const source = await connectClient(this.source(), 'source');
    try {
      const state = await readSlot(source, slot);
      if (!state) throw new PreflightError(`source: replication slot ${slot} has disappeared, so changes since the last confirmed position are lost; start over with pgferry cleanup, then pgferry start`);
      if (state.walStatus === 'lost') throw new PreflightError(lostSlotMessage(this.settings));
      return state;
    } finally {
      await source.end().catch(() => {});
    }
  }

  /** A source transaction (committed at `commitTime`, source clock) was applied or skipped: it no longer lags. */
  private transactionDone(commitTime: bigint): void {
    this.status.pendingCommits.shift();
    if (this.status.unappliedSince !== null && pgTimestampToMs(commitTime) >= this.status.unappliedSince) this.status.unappliedSince = null;
  }

  /**
   * Tables of the source that "every table" (no --tables) would select now but the migration's
   * publication does not hold: created after the start, without --capture-ddl (which adds them).
   * Empty when --tables was given, with --capture-ddl, or when the publication is gone.
   */
  private async unmigratedTables(source: pg.Client): Promise<SourceTable[]> {
    if (this.settings.tables.length > 0 || this.settings.captureDdl) return [];
    const { rows } = await source.query<{ oid: number }>(
      `SELECT pr.prrelid::int8::int AS oid FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = $1`,
      [this.settings.publication],
    );
    if (rows.length === 0) return [];
    const published = new Set(rows.map((r) => Number(r.oid)));
    return (await listSourceTables(source, [])).tables.filter((t) => !published.has(t.oid));
  }

  /**
   * Polls the source once a second: its WAL position (lag bytes), its clock (lag seconds are
   * measured against it), and the slot's WAL retention and `wal_status`. Warns above the retention
   * threshold; a slot the source invalidated ends the run with the recovery commands.
   */
  private startMonitor(): void {
    let client: pg.Client | null = null;
    let busy = false;
    let warnedAt = 0;
    let newTablesCheckedAt = 0;
    const poll = async (): Promise<void> => {
      if (busy || this.stopping) return;
      busy = true;
      try {
        if (!client) {
          client = await connectClient(this.source(), 'source');
          client.on('error', () => (client = null));
        }
        const sent = Date.now();
        const { rows: [r] } = await client.query<{ lsn: string; now_ms: number; wal_status: string | null; retained: number | null }>(
          `SELECT pg_current_wal_lsn()::text AS lsn, (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now_ms,
                  s.wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::float8 AS retained
             FROM (SELECT 1) AS one LEFT JOIN pg_replication_slots s ON s.slot_name = $1`,
          [this.settings.slot],
        );
        if (!r) return;
        this.status.sourceLsn = parseLsn(r.lsn);
        this.status.sourceClockOffsetMs = r.now_ms - (sent + Date.now()) / 2;
        this.status.slotRetainedBytes = r.retained;
        this.status.slotWalStatus = r.wal_status;
        if (r.wal_status === 'lost') {
          this.log.error({ slot: this.settings.slot }, lostSlotMessage(this.settings));
          this.failFatal(new PreflightError(lostSlotMessage(this.settings)));
          return;
        }
        if (Date.now() - newTablesCheckedAt >= NEW_TABLES_CHECK_MS) {
          newTablesCheckedAt = Date.now();
          for (const t of await this.unmigratedTables(client)) {
            if (this.unmigratedWarned.has(tableKey(t))) continue;
            this.unmigratedWarned.add(tableKey(t));
            this.log.warn({ table: tableKey(t) }, unmigratedMessage([t]));
          }
        }
        const limit = this.settings.slotRetentionWarningBytes;
        if (r.retained !== null && r.retained > limit) {
          if (Date.now() - warnedAt > RETENTION_WARN_INTERVAL_MS) {
            warnedAt = Date.now();
            this.log.warn(
              { slot: this.settings.slot, retainedWalBytes: r.retained, warningBytes: limit, walStatus: r.wal_status },
              'the slot holds back more source WAL than slotRetentionWarning: the source disk fills while pgferry lags; check /status lastError and the target',
            );
          }
        } else if (warnedAt !== 0) {
          warnedAt = 0;
          this.log.info({ slot: this.settings.slot, retainedWalBytes: r.retained }, 'slot retention back under slotRetentionWarning');
        }
      } catch {
        await client?.end().catch(() => {});
        client = null;
      } finally {
        busy = false;
      }
    };
    void poll();
    this.monitor = setInterval(() => void poll(), 1_000);
    this.monitor.unref();
    this.closeMonitor = async () => {
      await client?.end().catch(() => {});
    };
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
}

/** The one-line explanation of an invalidated slot, with the commands that recover. */
function lostSlotMessage(settings: Settings): string {
  const { slot, publication } = settings;
  const names = `${slot === 'pgferry' ? '' : ` --slot ${slot}`}${publication === 'pgferry' ? '' : ` --publication ${publication}`}`;
  return `source: replication slot ${slot} was invalidated (wal_status = lost: the source removed WAL it still needed, see max_slot_wal_keep_size), so the migration cannot continue; start over with pgferry cleanup${names}, then pgferry start, with the same settings (the copy is redone)`;
}

/** Microseconds since 2000-01-01 UTC (a pgoutput `TimestampTz`) as milliseconds since the Unix epoch. */
function pgTimestampToMs(us: bigint): number {
  return Number(us / 1000n) + 946_684_800_000;
}

/** The `kind` label of `pgferry_errors_total` for an error; `fallback` for errors pgferry did not raise itself. */
function errorKind(err: unknown, fallback: (typeof ERROR_KINDS)[number]): string {
  if (err instanceof PgferryError) {
    const kind = err.code.replace(/^PGFERRY_ERR_/, '').toLowerCase();
    return (ERROR_KINDS as readonly string[]).includes(kind) ? kind : 'other';
  }
  return isConnectionError(err) ? 'connection' : fallback;
}

/** Which side an error came from: its message says (`source: ...`), else `fallback`. */
function sideOf(err: unknown, fallback: Side): Side {
  const message = err instanceof Error ? err.message : '';
  return message.startsWith('source') ? 'source' : message.startsWith('target') ? 'target' : fallback;
}

/** A first-in first-out queue whose shift is O(1) (an array's shift moves every element). */
class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head === this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}

/** A constraint violation (SQLSTATE class 23) raised by the target. */
function isConstraintViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('23');
}

/** The warning for source tables the migration does not hold (created after its start, without --capture-ddl). */
function unmigratedMessage(tables: SourceTable[]): string {
  const names = tables.map(tableKey).join(', ');
  return `source: ${tables.length === 1 ? `table ${names} was` : `tables ${names} were`} created (or detached from a partitioned table) after the migration started and ${tables.length === 1 ? 'is' : 'are'} not migrated (only --capture-ddl adds new tables); migrate ${tables.length === 1 ? 'it' : 'them'} with a second pgferry (--tables, another --slot and --publication), or start over with --capture-ddl`;
}

/**
 * Refuses a target that is the source database itself (the same server, by its start time to the
 * microsecond, and the same database): apply would feed its own changes back to the slot for ever,
 * and preflight's "empty the target table" remedy would empty the source.
 */
async function refuseSameDatabase(source: pg.Client, target: pg.Client): Promise<void> {
  const sql = `SELECT pg_catalog.pg_postmaster_start_time()::text AS started, current_database() AS db`;
  const [a, b] = await Promise.all([source.query<{ started: string; db: string }>(sql), target.query<{ started: string; db: string }>(sql)]);
  const [s, t] = [a.rows[0]!, b.rows[0]!];
  if (s.started === t.started && s.db === t.db) {
    throw new PreflightError(`target: it is the source database itself (${s.db} on the same server); point --target at the database on the new server`);
  }
}

/** Runs both preflights and reports the problems of both sides in one error. */
async function allOf(...checks: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(checks);
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  if (failures.length === 0) return;
  if (failures.every((f) => f instanceof PreflightError)) throw new PreflightError(failures.map((f) => (f as Error).message).join('\n'));
  throw failures[0];
}

/**
 * Removes the target rows of tables about to be copied (again): TRUNCATE (ONLY an ordinary table:
 * its inheritance children are tables of their own), or, when a foreign key of a table left alone
 * refers to one of them, DELETE without firing triggers.
 */
async function emptyTables(target: pg.Client, tables: SourceTable[]): Promise<void> {
  const list = tables.map((t) => (t.relkind === 'r' ? `ONLY ${qualified(t)}` : qualified(t)));
  try {
    await target.query(`TRUNCATE ${list.join(', ')}`);
  } catch (err) {
    if ((err as { code?: string }).code !== '0A000') throw err; // cannot truncate a table referenced in a foreign key constraint
    await target.query('BEGIN');
    try {
      await target.query('SET LOCAL session_replication_role = replica');
      for (const t of list) await target.query(`DELETE FROM ${t}`);
      await target.query('COMMIT');
    } catch (e) {
      await target.query('ROLLBACK').catch(() => {});
      throw e;
    }
  }
}
