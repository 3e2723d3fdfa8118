import type pg from 'pg';
import { PgferryError, ErrorCodes } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { formatLsn, parseLsn, type Lsn } from '../protocol/lsn.js';
import { type PgoutputMessage, type TupleValue } from '../protocol/pgoutput.js';
import { literal } from '../pg/connection.js';
import type { Applier, PreparedPart, QueuedCommit } from './applier.js';
import type { DdlPayload } from '../ddl/ddl-message.js';

/** A group's keyed changes spread over the sessions once it holds this many changes (small groups stay on one). */
const SPREAD_AFTER = 1_000;
/**
 * A spread group's session waiting for a row lock of another session of the same group can never
 * get it (the shares commit together, after all of them are done): it fails after this long, and
 * the group is applied again on one session.
 */
const LOCK_TIMEOUT_MS = 1_000;

type RowChange = Extract<PgoutputMessage, { tag: 'insert' | 'update' | 'delete' | 'truncate' }>;

/**
 * A change that cannot be split across sessions (a TRUNCATE, captured DDL, or an update of a row's
 * key) arrived in a group already spread: the group is applied again on one session (see
 * {@link isSpreadConflict}).
 */
export class SpreadConflictError extends PgferryError {
  constructor(what: string) {
    super(ErrorCodes.APPLY, `internal: ${what} in a group applied on several sessions`, { retryable: true });
    this.name = 'SpreadConflictError';
  }
}

/**
 * Whether a failure is worth applying again on one session: it hit a change that cannot be split,
 * or it came while a group spread over several sessions was open or committing (see
 * {@link Lanes.spreadInvolved}): two of its sessions may have waited for each other's rows, or
 * collided on a unique value moved between rows of different sessions (lock timeout, deadlock,
 * unique violation), which one session applying the group in order never does.
 */
export function isSpreadConflict(err: unknown, spreadInvolved: boolean): boolean {
  return err instanceof SpreadConflictError || spreadInvolved;
}

/**
 * Applies groups on one main session, or, for a large group, on several: the main {@link Applier}
 * (whose commit stores the progress row) and helpers. Once a group holds {@link SPREAD_AFTER}
 * changes, every later change to a row with a replica identity key goes to the session chosen by a
 * hash of its key (a row touched before that stays on the main session), so all changes to one row
 * apply on one session, in source order. Everything else (tables without a key, REPLICA IDENTITY
 * FULL) stays on the main session; a change that must see every session's work (TRUNCATE, DDL, a
 * key update) fails the spread group with {@link SpreadConflictError}, and the caller applies it
 * again on one session.
 *
 * Exactly once: at the group's commit each helper's share is prepared (`PREPARE TRANSACTION
 * 'pgferry:<slot>:<group end LSN>:<n>'`), then the main session commits the group with its
 * progress row, then commits every prepared share. A crash in between leaves prepared shares that
 * {@link resolvePreparedShares} settles at the next start from the stored progress: committed when
 * the group's end LSN is at or below it, rolled back otherwise. The target needs
 * `max_prepared_transactions` of at least the number of helpers.
 */
export class Lanes {
  /**
   * Per relation OID: its key columns' indexes, or null (no key, or REPLICA IDENTITY FULL: main
   * session), and their positions, names and types (a key that changes in a group keeps it on one session).
   */
  private readonly keys = new Map<number, { cols: number[] | null; identity: string | null }>();
  /** The open group's changes so far, until it spreads. */
  private changes = 0;
  private spread = false;
  /** Relations the open group has changes of. */
  private readonly touched = new Set<number>();
  /** Spread groups handed to the main session's commit and not yet answered as committed. */
  private spreadCommits = 0;
  /** Keys of rows the open group touched on the main session before it spread (only while it still may: at most {@link SPREAD_AFTER}). */
  private readonly mainKeys = new Set<string>();
  /** Helpers (by index) with an open transaction in this group. */
  private readonly begun = new Set<number>();
  private readonly helpers: Applier[] = [];
  private endLsn: Lsn | null = null;
  /**
   * The open group stays on the main session: it applied captured DDL or a TRUNCATE, a table's key
   * changed in it, or it reached {@link SPREAD_AFTER} changes while it could not spread.
   */
  private unsplittable = false;
  /**
   * Settles when everything the main session had queued when the group spread has: the previous
   * group's commit (and of its prepared shares) and this group's changes sent before it. A helper
   * begins only then, so it sees all of that and never waits for a lock the main session holds.
   */
  private spreadAt: Promise<unknown> = Promise.resolve();
  /** Whether the group being built may spread (not in a replay on one session). */
  spreadable = true;

  /** @param held While it returns true no group spreads (see {@link spreadInvolved}). */
  constructor(
    readonly main: Applier,
    private readonly slot: string,
    private readonly held: () => boolean = () => false,
  ) {}

  /** Adds a helper session (before {@link init}). */
  addSession(helper: Applier): void {
    this.helpers.push(helper);
  }

  async init(): Promise<void> {
    await Promise.all([this.main, ...this.helpers].map((a) => a.init()));
  }

  set strict(value: boolean) {
    this.main.strict = value;
  }

  relation(msg: Extract<PgoutputMessage, { tag: 'relation' }>): void {
    const keyed = msg.replicaIdentity !== 'full' && msg.columns.some((c) => c.isKey);
    const cols = keyed ? msg.columns.flatMap((c, i) => (c.isKey ? [i] : [])) : null;
    const known = this.keys.get(msg.relationOid);
    const identity = cols === null ? null : JSON.stringify(cols.map((i) => [i, msg.columns[i]!.name, msg.columns[i]!.typeOid]));
    if (this.touched.has(msg.relationOid) && known?.identity !== identity) {
      // Its rows would route by other values from now on: one row could reach two sessions.
      if (this.spread) throw new SpreadConflictError("a change of a table's key");
      this.staysOnMain();
    }
    this.keys.set(msg.relationOid, { cols, identity });
    this.main.relation(msg);
    for (const h of this.helpers) h.relation(msg);
  }

  /** Routes one change (see the class); like {@link Applier.change}, a promise only when it has to wait, and a refusal may be thrown. */
  change(msg: RowChange): Promise<void> | undefined {
    if (this.helpers.length === 0) return this.main.change(msg);
    if (msg.tag !== 'truncate') this.touched.add(msg.relationOid);
    if (!this.spread) {
      // A TRUNCATE's lock would make every helper wait (and fail): the group stays on one session.
      if (msg.tag === 'truncate') this.staysOnMain();
      if (!this.unsplittable) this.rememberMainKeys(msg);
      if (++this.changes >= SPREAD_AFTER && !this.unsplittable) {
        if (this.spreadable && !this.held() && !this.main.strict) {
          this.spread = true;
          this.main.lockTimeout(LOCK_TIMEOUT_MS);
          this.spreadAt = this.main.settled();
        } else {
          this.staysOnMain(); // never later: its keys are no longer remembered
        }
      }
      return this.main.change(msg);
    }
    const key = this.keyOf(msg);
    if (key === null) {
      if (msg.tag === 'truncate') throw new SpreadConflictError('a TRUNCATE');
      // A keyed row without a usable key (its key updated, or not sent as text) could be on any session.
      if (this.keys.get(msg.relationOid)?.cols) throw new SpreadConflictError("an update of a row's key");
      return this.main.change(msg);
    }
    if (this.mainKeys.has(key)) return this.main.change(msg);
    const lane = hash(key) % (this.helpers.length + 1);
    if (lane === 0) return this.main.change(msg);
    const helper = this.helpers[lane - 1]!;
    if (!this.begun.has(lane)) {
      this.begun.add(lane);
      helper.begin(LOCK_TIMEOUT_MS, this.spreadAt);
    }
    return helper.change(msg);
  }

  /** Before the spread: the keys of the rows `msg` touches stay on the main session. */
  private rememberMainKeys(msg: RowChange): void {
    const key = this.keyOf(msg);
    if (key !== null) this.mainKeys.add(key);
    else if (msg.tag === 'update' && msg.oldTuple !== null) {
      // A key update: both of the row's keys stay on the main session.
      const cols = this.keys.get(msg.relationOid)?.cols;
      for (const tuple of cols ? [msg.oldTuple, msg.newTuple] : []) {
        const k = keyFrom(tuple, cols!);
        if (k !== null) this.mainKeys.add(k);
      }
    }
  }

  private staysOnMain(): void {
    this.unsplittable = true;
    this.mainKeys.clear();
  }

  /**
   * A group spread over several sessions is open, or was handed to its commit and not answered as
   * committed: a failure now may come from the split (see {@link isSpreadConflict}).
   */
  get spreadInvolved(): boolean {
    return this.spread || this.spreadCommits > 0;
  }

  /** The key that routes a change, or null when it goes to the main session (or cannot be split). */
  private keyOf(msg: RowChange): string | null {
    if (msg.tag === 'truncate') return null;
    const cols = this.keys.get(msg.relationOid)?.cols;
    if (!cols) return null;
    let tuple: TupleValue[];
    if (msg.tag === 'update') {
      if (msg.oldTuple !== null) return null; // the key changed
      tuple = msg.newTuple;
    } else {
      tuple = msg.tag === 'insert' ? msg.newTuple : msg.oldTuple;
    }
    return keyFrom(tuple, cols);
  }

  /**
   * Captured DDL, on the main session. The group no longer spreads: the helpers would not see the
   * uncommitted change (a table created in it would not exist for them).
   */
  async ddl(payload: DdlPayload): Promise<void> {
    if (this.spread) throw new SpreadConflictError('captured DDL');
    this.staysOnMain();
    await this.main.ddl(payload);
    for (const h of this.helpers) h.forgetPlans();
  }

  /** See {@link Applier.knownRelations}. */
  knownRelations(): Extract<PgoutputMessage, { tag: 'relation' }>[] {
    return this.main.knownRelations();
  }

  /** Every session forgets its resolved target tables (after DDL applied elsewhere). */
  forgetPlans(): void {
    this.main.forgetPlans();
    for (const h of this.helpers) h.forgetPlans();
  }

  endTransaction(endLsn: Lsn): boolean {
    const open = this.main.endTransaction(endLsn);
    if (open) this.endLsn = endLsn;
    return open;
  }

  get groupOpen(): boolean {
    return this.main.groupOpen;
  }

  groupDue(): boolean {
    return this.main.groupDue();
  }

  /** Prepares each helper's share of the group, then queues the main session's commit (see the class). */
  async commitGroup(opts: { durable?: boolean } = {}): Promise<QueuedCommit | null> {
    const parts: PreparedPart[] = [];
    if (this.endLsn !== null) {
      for (let n = 0; n < this.helpers.length; n++) {
        const part = await this.helpers[n]!.prepare(shareId(this.slot, this.endLsn, n + 1));
        if (part) parts.push(part);
      }
    }
    const spread = parts.length > 0;
    if (spread) this.spreadCommits++; // a failed commit stays involved
    this.reset();
    const done = await this.main.commitGroup({ ...opts, parts });
    this.endLsn = null;
    if (spread && done) done.committed.then(() => this.spreadCommits--, () => {});
    else if (spread) this.spreadCommits--; // nothing to commit after all
    return done;
  }

  walPositions(): Promise<{ inserted: Lsn; flushed: Lsn }> {
    return this.main.walPositions();
  }

  flushWal(): Promise<Lsn> {
    return this.main.flushWal();
  }

  /** Rolls back every session's open transaction; a share already prepared is settled at the next start. */
  async rollback(): Promise<void> {
    this.reset();
    this.endLsn = null;
    const results = await Promise.allSettled([this.main.rollback(), ...this.helpers.map((h) => h.rollback())]);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private reset(): void {
    this.spread = false;
    this.unsplittable = false;
    this.changes = 0;
    this.mainKeys.clear();
    this.begun.clear();
    this.touched.clear();
  }
}

/** The key columns' text values joined by NUL (which no text value holds), or null when one is not text. */
function keyFrom(tuple: TupleValue[], cols: number[]): string | null {
  let key = '';
  for (let n = 0; n < cols.length; n++) {
    const v = tuple[cols[n]!];
    if (typeof v !== 'string') return null;
    key += n === 0 ? v : `\u0000${v}`;
  }
  return key;
}

/** FNV-1a over the key's UTF-16 code units. */
function hash(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function sharePrefix(slot: string): string {
  return `pgferry:${slot}:`;
}

/** The name of helper `n`'s prepared share of the group ending at `endLsn`. */
export function shareId(slot: string, endLsn: Lsn, n: number): string {
  return `${sharePrefix(slot)}${formatLsn(endLsn)}:${n}`;
}

/**
 * Whether a share of a group ending at or before `upTo` is still prepared: that group's progress
 * row is committed, but not yet all of its rows (readers wait for this; see {@link Lanes}).
 */
export async function sharesPending(client: pg.Client, slot: string, upTo: Lsn): Promise<boolean> {
  const prefix = sharePrefix(slot);
  const { rows } = await client.query<{ gid: string }>(`SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND starts_with(gid, $1)`, [prefix]);
  return rows.some(({ gid }) => {
    const lsn = shareLsn(gid, prefix);
    return lsn !== null && lsn <= upTo;
  });
}

/** {@link sharesPending} up to the progress the target holds now (read on `client`, in the same statement). */
export async function sharesUnderProgress(client: pg.Client, slot: string): Promise<boolean> {
  const prefix = sharePrefix(slot);
  const { rows } = await client.query<{ gid: string; applied: string | null }>(
    `SELECT gid, (SELECT applied_lsn::text FROM pgferry.migration WHERE slot = $2) AS applied FROM pg_catalog.pg_prepared_xacts WHERE database = current_database() AND starts_with(gid, $1)`,
    [prefix, slot],
  );
  return rows.some(({ gid, applied }) => {
    const lsn = shareLsn(gid, prefix);
    return applied !== null && lsn !== null && lsn <= parseLsn(applied);
  });
}

/** The group end LSN in a share's name, or null for a name that is not one of ours. */
function shareLsn(gid: string, prefix: string): Lsn | null {
  const text = gid.slice(prefix.length, gid.lastIndexOf(':'));
  return /^[0-9A-F]+\/[0-9A-F]+$/i.test(text) ? parseLsn(text) : null;
}

/**
 * Settles the prepared shares a crash left on the target for `slot` (see {@link Lanes}): commits
 * those of groups whose progress row committed (end LSN at or below `applied`), rolls back the
 * others. Must run before anything is applied: a prepared share holds its rows' locks. A share
 * still being prepared or committed by a session of the previous run is waited for.
 * Returns how many were committed and rolled back.
 */
export async function resolvePreparedShares(client: pg.Client, slot: string, applied: Lsn | null, log?: Logger): Promise<{ committed: number; rolledBack: number }> {
  const out = { committed: 0, rolledBack: 0 };
  const prefix = sharePrefix(slot);
  // A share is listed only once its PREPARE has finished: wait for one still running in a session
  // of an interrupted run (its client gone, the server finishing the statement).
  for (const deadline = Date.now() + 30_000; ; await new Promise((r) => setTimeout(r, 100))) {
    const { rows: [busy] } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle' AND starts_with(query, $1)`,
      [`PREPARE TRANSACTION ${literal(prefix)}`.slice(0, -1)],
    );
    if (busy!.n === 0) break;
    if (Date.now() > deadline) {
      throw new PgferryError(ErrorCodes.APPLY, `target: a PREPARE TRANSACTION of slot ${slot} by an earlier run has not finished in 30 s (a synchronous standby down?); pgferry retries`, { retryable: true });
    }
  }
  const { rows } = await client.query<{ gid: string }>(
    `SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND starts_with(gid, $1) ORDER BY gid`,
    [prefix],
  );
  for (const { gid } of rows) {
    const lsn = shareLsn(gid, prefix);
    if (lsn === null) continue; // not one of ours
    const commit = applied !== null && lsn <= applied;
    for (const deadline = Date.now() + 30_000; ; ) {
      try {
        await client.query(`${commit ? 'COMMIT' : 'ROLLBACK'} PREPARED ${literal(gid)}`);
        if (commit) out.committed++;
        else out.rolledBack++;
        break;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === '42704') break; // settled meanwhile by the session that prepared it
        if (code !== '55000' || Date.now() > deadline) throw err; // 55000: busy in another session
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
  if (rows.length > 0) log?.info(out, 'settled prepared shares of groups left by an interrupted run');
  return out;
}
