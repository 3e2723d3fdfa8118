import { formatLsn, type Lsn } from './protocol/lsn.js';
import type { TableProgress } from './snapshot/copy.js';
import type { CutoverState } from './cutover/state.js';

export type Phase = 'preflight' | 'snapshot' | 'streaming' | 'cutover' | 'done' | 'failed';

/**
 * The live state of one migration, written by the pipeline and read by the HTTP API.
 * LSNs are bigint here and formatted only by {@link statusJson}.
 */
export class MigrationStatus {
  phase: Phase = 'preflight';
  /** End LSN of the last source transaction durably committed on the target. */
  appliedLsn: Lsn | null = null;
  /** Highest position confirmed to the source slot (never beyond what the target holds). */
  confirmedLsn: Lsn | null = null;
  /**
   * Commit LSN of the latest source transaction received that wrote to a published table (rows,
   * TRUNCATE or captured DDL): the cutover checks that none committed after its fence.
   */
  lastWriteCommitLsn: Lsn | null = null;
  /** The source's current WAL insert position, polled. */
  sourceLsn: Lsn | null = null;
  /** The last error, one line, password-free; cleared when streaming recovers. */
  lastError: string | null = null;
  transactionsApplied = 0;
  changesApplied = 0;
  readonly tables = new Map<string, TableProgress>();
  readonly startedAt = new Date();
  /** Connections the pipeline holds right now; `/readyz` needs both. */
  readonly connected = { source: false, target: false };
  /** Source clock minus local clock in ms, measured by the monitor: lag is computed on the source's clock. */
  sourceClockOffsetMs: number | null = null;
  /** Commit times (ms since the Unix epoch, source clock) of received source transactions not yet applied, oldest first. */
  readonly pendingCommits: number[] = [];
  /**
   * Commit time of the oldest transaction left unapplied when a replication session ended (the
   * server resends it); cleared once a transaction committed at or after it is applied.
   */
  unappliedSince: number | null = null;
  /** Source WAL the slot holds back (`pg_current_wal_lsn() - restart_lsn`), polled; null when unknown. */
  slotRetainedBytes: number | null = null;
  /** The slot's `wal_status` (`reserved`, `extended`, `unreserved`, `lost`). */
  slotWalStatus: string | null = null;
  /** Retention above which pgferry warns (the `slotRetentionWarning` setting). */
  slotRetentionWarningBytes: number | null = null;
  /** Estimated rows per table (planner statistics, or a count for small unanalyzed tables): copy ETAs. */
  readonly estimatedRows = new Map<string, number>();
  /** The current or last cutover (steps, write-blocked window); null before the first. */
  cutover: CutoverState | null = null;
  /**
   * Schema copy's last step, run while streaming (foreign-key validation, ANALYZE): null without
   * schema copy or before streaming; a cutover waits for `done`. `failed` carries the error.
   */
  schemaFinishing: { state: 'running' | 'done' | 'failed'; error: string | null } | null = null;
  /**
   * Source transactions being applied while they still run on the source (large ones, streamed
   * before their commit), and the changes received for them so far; nothing of them is visible on
   * the target, or confirmed, before their commit.
   */
  largeTransactions = { inProgress: 0, changes: 0 };
  private readonly samples: { at: number; changes: number; rows: Map<string, number> }[] = [];

  /** Records a sample for the rates below; called about once a second. Keeps {@link RATE_WINDOW_MS}. */
  sample(now = Date.now()): void {
    this.samples.push({ at: now, changes: this.changesApplied, rows: new Map([...this.tables].map(([k, t]) => [k, t.rowsCopied])) });
    while (this.samples.length > 2 && now - this.samples[0]!.at > RATE_WINDOW_MS) this.samples.shift();
  }

  /** Changes applied per second over the last few seconds; null before two samples. */
  changesPerSecond(): number | null {
    const [first, last] = [this.samples[0], this.samples[this.samples.length - 1]];
    if (!first || !last || last.at <= first.at) return null;
    return ((last.changes - first.changes) * 1000) / (last.at - first.at);
  }

  /** Rows copied per second into `table` over the last few seconds; null before two samples or after a restarted copy. */
  rowsPerSecond(table: string): number | null {
    const [first, last] = [this.samples[0], this.samples[this.samples.length - 1]];
    if (!first || !last || last.at <= first.at) return null;
    const delta = (last.rows.get(table) ?? 0) - (first.rows.get(table) ?? 0);
    return delta < 0 ? null : (delta * 1000) / (last.at - first.at);
  }
}

/** The window over which {@link MigrationStatus.changesPerSecond} and copy rates are measured. */
const RATE_WINDOW_MS = 10_000;

/** WAL bytes between the source's current position and what the target holds (or the slot confirmed, if further). */
export function lagBytes(s: MigrationStatus): number | null {
  const done = s.confirmedLsn !== null && (s.appliedLsn === null || s.confirmedLsn > s.appliedLsn) ? s.confirmedLsn : s.appliedLsn;
  if (s.sourceLsn === null || done === null) return null;
  return Number(s.sourceLsn > done ? s.sourceLsn - done : 0n);
}

/**
 * Age in seconds, on the source's clock, of the oldest source commit received but not yet applied
 * on the target; 0 when nothing is waiting (caught up, or an idle source).
 */
export function lagSeconds(s: MigrationStatus, now = Date.now()): number {
  const oldest = Math.min(s.unappliedSince ?? Infinity, s.pendingCommits[0] ?? Infinity);
  if (oldest === Infinity) return 0;
  return Math.max(0, (now + (s.sourceClockOffsetMs ?? 0) - oldest) / 1000);
}

/** Seconds until `table`'s copy finishes at the current rate; null when unknown. */
export function copyEtaSeconds(s: MigrationStatus, table: string): number | null {
  const t = s.tables.get(table);
  if (!t) return null;
  if (t.state === 'copied') return 0;
  const estimate = s.estimatedRows.get(table);
  const rate = s.rowsPerSecond(table);
  if (estimate === undefined || !rate) return null;
  return Math.max(0, (estimate - t.rowsCopied) / rate);
}

/** The `/status` document. Field names are an API: add, never rename. */
export function statusJson(s: MigrationStatus): Record<string, unknown> {
  const changesPerSecond = s.changesPerSecond();
  return {
    phase: s.phase,
    appliedLsn: s.appliedLsn === null ? null : formatLsn(s.appliedLsn),
    confirmedLsn: s.confirmedLsn === null ? null : formatLsn(s.confirmedLsn),
    sourceLsn: s.sourceLsn === null ? null : formatLsn(s.sourceLsn),
    lagBytes: lagBytes(s),
    lagSeconds: lagSeconds(s),
    transactionsApplied: s.transactionsApplied,
    changesApplied: s.changesApplied,
    changesPerSecond: changesPerSecond === null ? null : Math.round(changesPerSecond * 10) / 10,
    lastError: s.lastError,
    schemaFinishing: s.schemaFinishing === null ? null : { ...s.schemaFinishing },
    largeTransactions: { ...s.largeTransactions },
    startedAt: s.startedAt.toISOString(),
    connected: { ...s.connected },
    slot: { retainedWalBytes: s.slotRetainedBytes, walStatus: s.slotWalStatus, retentionWarningBytes: s.slotRetentionWarningBytes },
    cutover: s.cutover === null ? null : { ...s.cutover, steps: s.cutover.steps.map((step) => ({ ...step })) },
    tables: Object.fromEntries(
      [...s.tables].map(([k, t]) => {
        const eta = copyEtaSeconds(s, k);
        return [k, { state: t.state, rowsCopied: t.rowsCopied, bytesCopied: t.bytesCopied, estimatedRows: s.estimatedRows.get(k) ?? null, etaSeconds: eta === null ? null : Math.round(eta) }];
      }),
    ),
  };
}
