import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { lagBytes, lagSeconds, type MigrationStatus, type Phase } from '../status.js';

/** Every phase, so `pgferry_phase{phase}` always exports one series per phase (1 for the current one). */
export const PHASES: readonly Phase[] = ['preflight', 'snapshot', 'streaming', 'cutover', 'done', 'failed'];
const COPY_STATES = ['pending', 'copying', 'copied'] as const;

/** Which side of the migration a connection or a failure belongs to. */
export type Side = 'source' | 'target';

/**
 * pgferry's Prometheus metrics. Names are an API (the Grafana dashboard and `grafana/alerts.yml`
 * query them, and a test checks both against this registry): add, never rename.
 * Gauges that mirror {@link MigrationStatus} are computed when scraped; the pipeline only
 * increments the counters and observes the histogram.
 */
export interface Metrics {
  readonly registry: Registry;
  /** `{table, op}`; op is insert, update, delete or truncate. */
  readonly changesApplied: Counter<'table' | 'op'>;
  readonly transactionsApplied: Counter;
  /** Wall time of one target transaction, from its first change to its commit. */
  readonly applyBatchDuration: Histogram;
  /** `{kind}`: the error's area (connection, apply, protocol, copy, preflight, state, ...). */
  readonly errors: Counter<'kind'>;
  /** `{side}`: replication sessions restarted after a failure on that side. */
  readonly reconnects: Counter<'side'>;
  /** Groups applied on several target sessions (`--apply-sessions`, src/apply/lanes.ts). */
  readonly spreadGroups: Counter;
  /** Spread groups that could not be split and were applied again on one session. */
  readonly spreadRetries: Counter;
  /** `{step}`: duration of each cutover step, set by the cutover. */
  readonly cutoverStepDuration: Gauge<'step'>;
  /** How long writes to the source were blocked during cutover. */
  readonly writeBlocked: Gauge;
}

/**
 * Builds a registry with pgferry's metrics and the default Node.js process metrics. One per app
 * (no global registry), so several apps in one process (tests) do not share series.
 */
export function createMetrics(status: MigrationStatus): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  new Gauge({
    name: 'pgferry_phase',
    help: 'Migration phase: 1 for the current phase, 0 for the others',
    labelNames: ['phase'],
    registers,
    collect() {
      for (const p of PHASES) this.set({ phase: p }, status.phase === p ? 1 : 0);
    },
  });
  new Gauge({
    name: 'pgferry_lag_bytes',
    help: 'Source WAL bytes between the current source position and what the target holds',
    registers,
    collect() {
      const lag = lagBytes(status);
      if (lag === null) this.reset();
      else this.set(lag);
    },
  });
  new Gauge({
    name: 'pgferry_lag_seconds',
    help: "Age, on the source's clock, of the oldest source commit not yet applied on the target; 0 when caught up",
    registers,
    collect() {
      this.set(lagSeconds(status));
    },
  });
  new Gauge({
    name: 'pgferry_large_transactions_in_progress',
    help: 'Source transactions being applied while they still run on the source (streamed before their commit)',
    registers,
    collect() {
      this.set(status.largeTransactions.inProgress);
    },
  });
  lsnGauge(registry, 'pgferry_applied_lsn', 'End LSN of the last source transaction committed on the target, as a byte position', () => status.appliedLsn);
  lsnGauge(registry, 'pgferry_confirmed_lsn', 'Position confirmed to the source slot, as a byte position', () => status.confirmedLsn);
  lsnGauge(registry, 'pgferry_source_lsn', "The source's current WAL position, as a byte position", () => status.sourceLsn);
  new Gauge({
    name: 'pgferry_slot_retained_wal_bytes',
    help: 'Source WAL held back by the replication slot (pg_current_wal_lsn() - restart_lsn)',
    registers,
    collect() {
      if (status.slotRetainedBytes === null) this.reset();
      else this.set(status.slotRetainedBytes);
    },
  });
  new Gauge({
    name: 'pgferry_slot_retention_warning_bytes',
    help: 'Configured slot retention above which pgferry warns (slotRetentionWarning)',
    registers,
    collect() {
      if (status.slotRetentionWarningBytes === null) this.reset();
      else this.set(status.slotRetentionWarningBytes);
    },
  });
  new Gauge({
    name: 'pgferry_connected',
    help: 'Whether pgferry holds a working connection to that side (1) or not (0)',
    labelNames: ['side'],
    registers,
    collect() {
      for (const side of ['source', 'target'] as const) this.set({ side }, status.connected[side] ? 1 : 0);
    },
  });
  new Gauge({
    name: 'pgferry_snapshot_tables',
    help: 'Tables of the initial copy by state (pending, copying, copied)',
    labelNames: ['state'],
    registers,
    collect() {
      for (const state of COPY_STATES) this.set({ state }, [...status.tables.values()].filter((t) => t.state === state).length);
    },
  });
  new Gauge({
    name: 'pgferry_snapshot_rows_estimated',
    help: 'Estimated rows of each table to copy (planner statistics), for copy ETAs',
    labelNames: ['table'],
    registers,
    collect() {
      this.reset();
      for (const [table, rows] of status.estimatedRows) this.set({ table }, rows);
    },
  });
  // The copy keeps running totals per table (reset when a copy starts over); the counters add each
  // increase, so they only ever grow, as Prometheus counters must.
  const seenRows = new Map<string, number>();
  new Counter({
    name: 'pgferry_snapshot_rows_copied_total',
    help: 'Rows copied by the initial copy, per table (a copy that starts over counts again)',
    labelNames: ['table'],
    registers,
    collect() {
      for (const [table, t] of status.tables) this.inc({ table }, increase(seenRows, table, t.rowsCopied));
    },
  });
  const seenBytes = new Map<string, number>();
  new Counter({
    name: 'pgferry_snapshot_bytes_copied_total',
    help: 'Bytes of COPY data moved by the initial copy',
    registers,
    collect() {
      for (const [table, t] of status.tables) this.inc(increase(seenBytes, table, t.bytesCopied));
    },
  });

  const metrics: Metrics = {
    registry,
    changesApplied: new Counter({ name: 'pgferry_changes_applied_total', help: 'Row changes applied to the target, by table and operation', labelNames: ['table', 'op'], registers }),
    transactionsApplied: new Counter({ name: 'pgferry_transactions_applied_total', help: 'Source transactions committed on the target', registers }),
    applyBatchDuration: new Histogram({
      name: 'pgferry_apply_batch_duration_seconds',
      help: 'Duration of one target transaction, from its first change to its commit',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
    errors: new Counter({ name: 'pgferry_errors_total', help: 'Errors by kind (connection, apply, protocol, copy, preflight, state, other)', labelNames: ['kind'], registers }),
    reconnects: new Counter({ name: 'pgferry_reconnects_total', help: 'Replication sessions restarted after a failure, by the side that failed', labelNames: ['side'], registers }),
    spreadGroups: new Counter({ name: 'pgferry_apply_spread_groups_total', help: 'Target transactions (groups) applied on several target sessions at once (--apply-sessions)', registers }),
    spreadRetries: new Counter({ name: 'pgferry_apply_spread_retries_total', help: 'Groups spread over several sessions that could not be split and were applied again on one session', registers }),
    cutoverStepDuration: new Gauge({ name: 'pgferry_cutover_step_duration_seconds', help: 'Duration of each cutover step', labelNames: ['step'], registers }),
    writeBlocked: new Gauge({ name: 'pgferry_write_blocked_seconds', help: 'How long writes to the source were blocked during cutover', registers }),
  };
  // Series that exist from the start, so rate() and increase() see the first failure.
  for (const kind of ERROR_KINDS) metrics.errors.inc({ kind }, 0);
  for (const side of ['source', 'target'] as const) metrics.reconnects.inc({ side }, 0);
  return metrics;
}

/** The `kind` label values of `pgferry_errors_total`. */
export const ERROR_KINDS = ['connection', 'apply', 'protocol', 'copy', 'preflight', 'state', 'config', 'other'] as const;

function lsnGauge(registry: Registry, name: string, help: string, read: () => bigint | null): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      const lsn = read();
      if (lsn === null) this.reset();
      else this.set(Number(lsn));
    },
  });
}

/** How much `value` grew since the last call for `key`; a value that went down (a restarted copy) counts from 0. */
function increase(seen: Map<string, number>, key: string, value: number): number {
  const before = seen.get(key) ?? 0;
  seen.set(key, value);
  return value >= before ? value - before : value;
}
