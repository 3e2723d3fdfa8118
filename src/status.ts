import { formatLsn, type Lsn } from './protocol/lsn.js';
import type { TableProgress } from './snapshot/copy.js';

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
  /** The source's current WAL insert position, polled. */
  sourceLsn: Lsn | null = null;
  /** The last error, one line, password-free; cleared when streaming recovers. */
  lastError: string | null = null;
  transactionsApplied = 0;
  changesApplied = 0;
  readonly tables = new Map<string, TableProgress>();
  readonly startedAt = new Date();
}

/** The `/status` document. Field names are an API: add, never rename. */
export function statusJson(s: MigrationStatus): Record<string, unknown> {
  const done = s.confirmedLsn !== null && (s.appliedLsn === null || s.confirmedLsn > s.appliedLsn) ? s.confirmedLsn : s.appliedLsn;
  const lag = s.sourceLsn !== null && done !== null ? (s.sourceLsn > done ? s.sourceLsn - done : 0n) : null;
  return {
    phase: s.phase,
    appliedLsn: s.appliedLsn === null ? null : formatLsn(s.appliedLsn),
    confirmedLsn: s.confirmedLsn === null ? null : formatLsn(s.confirmedLsn),
    sourceLsn: s.sourceLsn === null ? null : formatLsn(s.sourceLsn),
    lagBytes: lag === null ? null : Number(lag),
    transactionsApplied: s.transactionsApplied,
    changesApplied: s.changesApplied,
    lastError: s.lastError,
    startedAt: s.startedAt.toISOString(),
    tables: Object.fromEntries([...s.tables].map(([k, t]) => [k, { state: t.state, rowsCopied: t.rowsCopied, bytesCopied: t.bytesCopied }])),
  };
}
