import type pg from 'pg';
import { PgferryError, ErrorCodes, isConnectionError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { formatLsn, type Lsn } from '../protocol/lsn.js';
import type { PgoutputMessage } from '../protocol/pgoutput.js';
import type { DdlPayload } from '../ddl/ddl-message.js';
import { Applier, type QueuedCommit } from './applier.js';

type RelationMessage = Extract<PgoutputMessage, { tag: 'relation' }>;
type RowChange = Extract<PgoutputMessage, { tag: 'insert' | 'update' | 'delete' | 'truncate' }>;

/**
 * Source transactions streamed at once (each holds a target session and an open transaction):
 * past this, apply fails over to whole transactions (see {@link StreamedTransactions.start}).
 */
export const MAX_STREAMED = 4;

/** One in-progress source transaction and the target session applying it. */
interface Streamed {
  xid: number;
  client: pg.Client;
  applier: Applier;
  /** Subtransactions seen, in order of their first change: each has a savepoint before that change. */
  subtransactions: number[];
  /** The same, for lookups. */
  savepoints: Set<number>;
  /** Relation messages sent inside this transaction's blocks: the main stream relies on them once it commits. */
  relations: RelationMessage[];
  /** A captured DDL statement was applied in it. */
  ddl: boolean;
  /** Row changes received for it. */
  changes: number;
  /**
   * It began before the position this replication session started from, so it may be one the
   * target already holds: after a restart PostgreSQL 14 streams such a transaction again (seen
   * with captured DDL in it) and then aborts it. Its failures are kept, not thrown, until its
   * Stream Commit or Stream Abort tells which it was.
   */
  suspect: boolean;
  /** A suspect transaction's failure (its session is closed and the rest of it ignored). */
  failed: unknown;
}

/**
 * Large source transactions applied while they are still running on the source (pgoutput protocol
 * 2, `streaming 'on'`: the server sends a transaction in blocks once it outgrows
 * `logical_decoding_work_mem`, then Stream Commit or Stream Abort).
 *
 * Each gets a target session of its own and one target transaction, which commits when, and only
 * when, its Stream Commit arrives, with the transaction's end LSN stored in that same target
 * transaction (exactly as a group's). A subtransaction gets a savepoint before its first change, so
 * its Stream Abort rolls back exactly its changes (and those of subtransactions begun after it,
 * which are its children). Nothing is confirmed to the source because of a streamed transaction
 * until its commit is durable; one interrupted is rolled back and the server streams it again from
 * its first change.
 *
 * The caller keeps commit order: it commits the main session's groups (every transaction that
 * committed before) and waits for them before a block is applied and before a streamed transaction
 * commits. Rows a streamed transaction changes cannot be changed by any transaction the main session
 * applies before that commit (the source held their locks; a subtransaction's abort releases them,
 * so {@link abort} returns once its rollback is done), so the sessions never wait for each other.
 */
export class StreamedTransactions {
  private readonly open = new Map<number, Streamed>();
  /** Transactions whose commit is queued on their session, until it is answered (a forced stop ends them too). */
  private readonly committing = new Set<Streamed>();
  /** The transaction of the current stream block, between Stream Start and Stream Stop. */
  private current: Streamed | null = null;

  constructor(
    private readonly connect: () => Promise<pg.Client>,
    /** The main apply sessions (see Lanes): relations are shared with them. */
    private readonly main: Pick<Applier, 'knownRelations' | 'relation' | 'forgetPlans'>,
    private readonly slot: string,
    private readonly log: Logger,
    private readonly strictTypes: boolean,
  ) {}

  /** How many are open (each holds a target session), and the row changes received for them. */
  summary(): { inProgress: number; changes: number } {
    let changes = 0;
    for (const t of this.open.values()) changes += t.changes;
    return { inProgress: this.open.size, changes };
  }

  /**
   * Stream Start. The first block of a transaction opens its session; more than
   * {@link MAX_STREAMED} at once is refused with an error the caller answers by streaming whole
   * transactions only.
   */
  async start(xid: number, firstSegment: boolean, strict: boolean, suspect = false): Promise<void> {
    let txn = this.open.get(xid);
    if (!txn) {
      if (!firstSegment) throw new PgferryError(ErrorCodes.PROTOCOL, `source: streamed transaction ${xid} continues, but its first block was never received`);
      if (this.open.size >= MAX_STREAMED) throw new PgferryError(ErrorCodes.APPLY, `source: more than ${MAX_STREAMED} large transactions in progress at once`);
      const client = await this.connect();
      const applier = new Applier(client, this.slot, this.log, this.strictTypes);
      txn = { xid, client, applier, subtransactions: [], savepoints: new Set(), relations: [], ddl: false, changes: 0, suspect, failed: null };
      this.open.set(xid, txn);
      await this.guard(txn, applier.init());
      // Its transaction stays open as long as the source's runs: no target timeout may end it.
      await this.guard(txn, client.query(`SELECT set_config(name, '0', false) FROM pg_settings WHERE name IN ('idle_in_transaction_session_timeout', 'transaction_timeout')`).then(() => undefined));
      for (const r of this.main.knownRelations()) applier.relation(r);
      applier.strict = strict;
      applier.begin();
      this.log.debug({ xid }, 'applying a large source transaction while it runs');
    }
    this.current = txn;
  }

  /** Stream Stop: the block ends (its changes stay in the transaction's target session). */
  stop(): void {
    this.current = null;
  }

  relation(msg: RelationMessage): void {
    const txn = this.block();
    txn.applier.relation(msg);
    txn.relations.push(msg);
  }

  /** A row change of the current block; `xid` is its (sub)transaction's. */
  change(msg: RowChange & { xid?: number }): Promise<void> {
    const txn = this.block();
    const sub = msg.xid;
    txn.changes++;
    if (txn.failed !== null) return Promise.resolve();
    if (sub === undefined || sub === txn.xid || txn.savepoints.has(sub)) return this.guard(txn, promised(() => txn.applier.change(msg)));
    txn.subtransactions.push(sub);
    txn.savepoints.add(sub);
    return this.guard(txn, txn.applier.savepoint(savepointName(sub)).then(() => txn.applier.change(msg)));
  }

  async ddl(payload: DdlPayload): Promise<void> {
    const txn = this.block();
    txn.ddl = true;
    if (txn.failed === null) await this.guard(txn, txn.applier.ddl(payload));
  }

  /**
   * `work` on a suspect transaction's session: a failure (other than a lost connection) is kept
   * and its session closed, instead of failing the stream.
   */
  private guard(txn: Streamed, work: Promise<void>): Promise<void> {
    if (!txn.suspect) return work;
    return work.catch(async (err: unknown) => {
      if (isConnectionError(err)) throw err;
      txn.failed = err;
      this.log.debug({ xid: txn.xid, err }, 'a streamed transaction that began before the start position failed; waiting for its end');
      await this.close(txn);
    });
  }

  /**
   * Stream Commit: commits the transaction's target transaction with `endLsn` stored in it (the
   * caller committed every earlier group first). `alreadyApplied`: the target holds it already
   * (it ends at or before the stored position): rolled back instead. The session closes once the
   * commit is answered. Afterwards the main session knows the relations the transaction described.
   */
  async commit(xid: number, endLsn: Lsn, alreadyApplied: boolean): Promise<QueuedCommit | null> {
    const txn = this.take(xid);
    if (!txn) throw new PgferryError(ErrorCodes.PROTOCOL, `source: Stream Commit for transaction ${xid}, which was never streamed`);
    for (const r of txn.relations) this.main.relation(r);
    if (txn.ddl) this.main.forgetPlans();
    if (alreadyApplied) {
      await this.close(txn);
      return null;
    }
    if (txn.failed !== null) throw txn.failed;
    txn.applier.endTransaction(endLsn);
    this.committing.add(txn);
    const finished = (): Promise<void> => {
      this.committing.delete(txn);
      return this.close(txn);
    };
    let done: QueuedCommit | null;
    try {
      // Sending the last changes can surface an earlier batch's failure: the session must not stay
      // open with its locks (a whole-transaction replay would wait for them forever).
      done = await txn.applier.commitGroup();
      if (!done) throw new PgferryError(ErrorCodes.APPLY, `target: large transaction ${xid} has no open target transaction at its commit`);
    } catch (err) {
      await finished();
      throw err;
    }
    void done.committed.then(finished, finished);
    this.log.debug({ xid, endLsn: formatLsn(endLsn) }, 'large source transaction committed');
    return done;
  }

  /**
   * Stream Abort: the whole transaction (`subXid === xid`), rolled back and its session closed, or
   * one subtransaction, rolled back to its savepoint (a subtransaction without changes has none).
   */
  async abort(xid: number, subXid: number): Promise<void> {
    if (xid === subXid) {
      const txn = this.take(xid);
      if (txn) await this.close(txn);
      return;
    }
    const txn = this.open.get(xid);
    if (!txn || txn.failed !== null) return;
    // A captured DDL message carries the top-level xid, so whether it belonged to the aborted
    // subtransaction is unknown: let the server send the transaction whole at its commit instead.
    if (txn.ddl) throw new PgferryError(ErrorCodes.APPLY, `source: a subtransaction of large transaction ${xid}, which holds captured DDL, was rolled back`);
    const at = txn.subtransactions.indexOf(subXid);
    if (at < 0) return;
    // Savepoints after it belong to its children: ROLLBACK TO releases them.
    for (const gone of txn.subtransactions.splice(at)) txn.savepoints.delete(gone);
    await this.guard(txn, txn.applier.rollbackTo(savepointName(subXid)));
  }

  /** Ends every open transaction's session at once, without waiting for what it runs (a forced stop). */
  terminate(): void {
    for (const t of [...this.open.values(), ...this.committing]) void t.client.end().catch(() => {});
  }

  /** Rolls back and closes every open transaction (a failure, a stop: the server streams them again). */
  async closeAll(): Promise<void> {
    const all = [...this.open.values()];
    this.open.clear();
    this.current = null;
    await Promise.all(all.map((t) => this.close(t)));
  }

  private block(): Streamed {
    if (!this.current) throw new PgferryError(ErrorCodes.PROTOCOL, 'source: streamed change outside a stream block');
    return this.current;
  }

  private take(xid: number): Streamed | undefined {
    const txn = this.open.get(xid);
    this.open.delete(xid);
    if (this.current === txn) this.current = null;
    return txn;
  }

  private async close(txn: Streamed): Promise<void> {
    await txn.applier.rollback().catch(() => {});
    await txn.client.end().catch(() => {});
  }
}

function savepointName(subXid: number): string {
  return `pgferry_sub_${subXid}`;
}

/** `work`'s wait as a promise: resolved when it returned nothing, rejected when it threw. */
function promised(work: () => Promise<void> | undefined): Promise<void> {
  try {
    return work() ?? Promise.resolve();
  } catch (err) {
    return Promise.reject(err);
  }
}
