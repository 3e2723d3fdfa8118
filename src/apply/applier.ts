import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { PgferryError, ErrorCodes, describeError, withTables } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { formatLsn, parseLsn, type Lsn } from '../protocol/lsn.js';
import { UNCHANGED_TOAST, type PgoutputMessage, type TupleValue } from '../protocol/pgoutput.js';
import { ident, literal, qualified, tableKey, type TableName } from '../pg/connection.js';
import { copyInStatement, copyTextLine, deleteByKeysStatement, deleteStatement, inlineParams, insertRowsStatement, insertStatement, matchStatement, truncateStatement, updateByKeysStatement, updateStatement, type RelationPlan, type Statement } from './statements.js';
import { lockShares, saveAppliedLsn, unlockShares } from './state-store.js';
import { planDdl, type DdlPayload } from '../ddl/ddl-message.js';

type RelationMessage = Extract<PgoutputMessage, { tag: 'relation' }>;

/** Batch bounds: memory stays bounded whatever the transaction size. */
const INSERT_BATCH_ROWS = 5_000;
const STATEMENT_BATCH = 500;
const KEYED_BATCH_ROWS = 1_000;
/** Rows held in open runs, all tables together, before every run is sent. */
const RUN_BYTES = 8 * 1024 * 1024;
/** A group commits after this many source transactions or this long since it opened, whichever first. */
const GROUP_TRANSACTIONS = 1_000;
const GROUP_MS = 200;
const BATCH_BYTES = 2 * 1024 * 1024;
/** Statement batches and COPYs queued on the target before the applier waits for the oldest. */
const IN_FLIGHT = 3;
/** ...or fewer, once they hold this many bytes of SQL or COPY data (a few huge values). */
const IN_FLIGHT_BYTES = 3 * 1024 * 1024;
/** A run of fewer inserts than this goes as one multi-row INSERT in the statement batch, more as COPY. */
const COPY_MIN_ROWS = 100;

/** Types below this OID are built in: the same OID on every server version pgferry supports. */
const FIRST_NORMAL_OID = 16384;

/** A statement waiting in the batch: what it must touch, and (only for an error message) its first keys. */
interface QueuedStatement {
  sql: string;
  plan: RelationPlan;
  op: 'insert' | 'update' | 'delete';
  rows: number;
  /**
   * At most {@link NAMED_KEYS} of its rows' keys. Only these: a statement stays queued until the
   * target answers, and holding all its rows with it kept every row of the batches in flight alive
   * past the young generation (garbage collection copied them, then a full collection freed them).
   */
  keys: string[];
}

/** How many of a statement's keys an error message names. */
const NAMED_KEYS = 5;

/**
 * A queued target commit of source transactions ending at `lsn` (a group, or a streamed
 * transaction): `committed` settles when the target has answered (see {@link Applier.commitGroup}).
 */
export interface QueuedCommit {
  lsn: Lsn;
  /** Target sessions the group was applied on (1, or more when spread: see Lanes). */
  sessions: number;
  transactions: number;
  counts: ChangeCounts;
  committed: Promise<{ targetLsn: Lsn; flushedLsn: Lsn }>;
}

/** One session's share of a group, prepared as a two-phase transaction named `gid` (see Applier.prepare). */
export interface PreparedPart {
  gid: string;
  prepared: Promise<void>;
  counts: ChangeCounts;
}

/** Counts of what one transaction did, per table and operation. */
export type ChangeCounts = Map<string, { insert: number; update: number; delete: number; truncate: number }>;

/** Inserts into one table with the same columns, not yet sent. */
interface InsertRun {
  present: number[];
  presentKey: string;
  tuples: TupleValue[][];
}

/**
 * Where a key's row sits in its table's runs: its index in the run times 4, plus the run (a number,
 * not an object: one per row of a bulk insert).
 */
type KeySlot = number;
const IN_INSERT = 0;
const IN_UPDATE = 1;
const IN_DELETE = 2;

/** Updates (same columns) or deletes to one table by distinct keys, to send as one statement. */
interface KeyedRun {
  set: number[];
  rows: (string | null)[][];
}

/**
 * A table's changes not yet sent: at most one run of each kind, holding distinct keys (a key is in
 * at most one run). Runs with disjoint keys commute, and they are sent deletes first, then
 * updates, then inserts: deletes only free unique values and inserts only claim them, so that
 * order never trips a unique constraint that source order did not. An update of a row already in
 * the insert or update run replaces that row's values there ({@link Applier.mergeUpdate}).
 */
interface TableRuns {
  plan: RelationPlan;
  insert: InsertRun | null;
  update: KeyedRun | null;
  delete: KeyedRun | null;
  /** The key of every row in the runs, with where its row is (empty for a table without a key: it has inserts only). */
  keys: Map<string, KeySlot>;
  bytes: number;
}

/**
 * Applies decoded transactions to the target the way PostgreSQL's apply worker does, with
 * `session_replication_role = replica` so target triggers and foreign keys do not fire again.
 * Consecutive source transactions may share one target transaction (a group); the end LSN of the
 * group's last source transaction is written to pgferry's state table inside that same target
 * transaction, so data and progress commit (or vanish) together.
 *
 * Order: changes to one target table apply in source order. Within a group, changes to different
 * tables may be sent in another order (one run per table: inserts as one COPY or multi-row INSERT,
 * updates and deletes by distinct keys as one statement); the group commits atomically, so no
 * reader sees the difference. A constraint that a reordered batch trips (a unique value moved from
 * one row to another) is not a divergence: in {@link strict} mode every change is sent alone, in
 * source order, and the caller replays the failed group that way.
 *
 * Every change must touch exactly one row; anything else means the target diverged, and apply
 * stops with an error rather than silently skipping (the slot keeps the change for a retry).
 */
export class Applier {
  private readonly relations = new Map<number, RelationMessage>();
  private readonly plans = new Map<number, RelationPlan>();
  private open = false;
  /** The open runs of each target table (`schema.name`). */
  private runs = new Map<string, TableRuns>();
  private runBytes = 0;
  /** Statements not yet sent, in order; they go in one simple-query round trip. */
  private statements: QueuedStatement[] = [];
  private statementBytes = 0;
  /** Statement batches and COPYs sent but not yet answered, oldest first, with their sizes (see {@link pipelined}). */
  private inFlight: { done: Promise<void>; bytes: number }[] = [];
  /** Batches sent on the session and not yet answered: none means the target is idle, waiting for the next. */
  private unanswered = 0;
  /** Settles when the last command queued on the apply session has. */
  private tail: Promise<unknown> = Promise.resolve();
  /** The target's WAL page and segment sizes, in bytes. */
  private wal = { blockSize: 8192n, segmentSize: 16n * 1024n * 1024n };
  /** The first failure on the apply session: every command queued after it fails with it. */
  private failure: unknown = null;
  /**
   * Send every change alone, in source order (no runs): set between source transactions, for a
   * replay of a group whose batched form hit a constraint.
   */
  strict = false;
  private counts: ChangeCounts = new Map();
  /** The source transactions in the open target transaction: how many, and where the last one ends. */
  private group: { endLsn: Lsn | null; transactions: number; openedAt: number } = { endLsn: null, transactions: 0, openedAt: 0 };

  constructor(
    private readonly client: pg.Client,
    private readonly slot: string,
    private readonly log: Logger,
    /**
     * Built-in column types must be the same on the target as in the Relation message (a type
     * changed on the source stops apply instead of converting values). True whenever schema copy
     * made (or checked) the target's tables; false with `--schema-copy=false`, where the target
     * may deliberately use other types.
     */
    private readonly strictTypes = false,
  ) {}

  /** Prepares the apply session; call once per connection. */
  async init(): Promise<void> {
    const { rows: [wal] } = await this.serial(() =>
      this.client.query<{ block: string; segment: string }>(`SELECT current_setting('wal_block_size') AS block, (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS segment`),
    );
    this.wal = { blockSize: BigInt(wal!.block), segmentSize: BigInt(wal!.segment) };
    // standard_conforming_strings: inlined literals must not treat backslashes as escapes. No hash or
    // merge joins: a batch of keyed rows must probe the key index row by row (as the native apply
    // worker does), never scan the whole table per batch.
    await this.serial(() => this.client.query(`SET session_replication_role = replica; SET standard_conforming_strings = on; SET enable_hashjoin = off; SET enable_mergejoin = off; SET synchronous_commit = off`));
  }

  /**
   * Records a relation's shape. The target table is resolved on the first change that uses it, as
   * the native apply worker does: with `publish_via_partition_root` the server also describes leaf
   * partitions that never carry changes, and the target may be partitioned differently.
   */
  relation(msg: RelationMessage): void {
    this.relations.set(msg.relationOid, msg);
    this.plans.delete(msg.relationOid);
  }

  /** Every relation shape recorded so far (the latest of each), e.g. to seed a second applier of the same stream. */
  knownRelations(): RelationMessage[] {
    return [...this.relations.values()];
  }

  /** Forgets every resolved target table: the next change of each resolves it again (after DDL elsewhere). */
  forgetPlans(): void {
    this.plans.clear();
  }

  /**
   * Marks `name` at this point of the open target transaction: every change received before it is
   * sent first, in order. Queued, not awaited; a failure surfaces at the next wait.
   */
  async savepoint(name: string): Promise<void> {
    if (!this.open) this.begin();
    await this.send();
    this.queueCommand(`SAVEPOINT ${ident(name)}`);
  }

  /**
   * Undoes every change applied after savepoint `name` (a source subtransaction aborted), and
   * returns once it is done: the source released that subtransaction's row locks, so what comes
   * next on another session may touch those rows. Changes buffered but not yet sent are sent first,
   * so the rollback covers exactly the changes received after the savepoint. The change counts are
   * not corrected.
   */
  async rollbackTo(name: string): Promise<void> {
    await this.flush();
    await this.serial(() => this.client.query(`ROLLBACK TO SAVEPOINT ${ident(name)}`));
  }

  private queueCommand(sql: string): void {
    const done = this.serial(async () => void (await this.client.query(sql)));
    done.catch(() => {}); // surfaces at the next wait, see drain()
    this.inFlight.push({ done, bytes: 0 });
  }

  /** Maps a relation onto its target table, checked against the target catalog. */
  private async resolve(msg: RelationMessage): Promise<RelationPlan> {
    const table: TableName = { schema: msg.namespace, name: msg.name };
    const { rows } = await this.serial(() => this.client.query<{ name: string; type: string; base_type: string; identity: string; generated: string; relkind: string; type_oid: number; typmod: number }>(
      `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attidentity AS identity, a.attgenerated AS generated,
              a.atttypid::int8::float8 AS type_oid, a.atttypmod AS typmod,
              (SELECT format('%I.%I', n.nspname, ty.typname) FROM pg_type ty JOIN pg_namespace n ON n.oid = ty.typnamespace WHERE ty.oid = a.atttypid) AS base_type,
              (SELECT relkind FROM pg_class WHERE oid = a.attrelid) AS relkind
         FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
      [qualified(table)],
    ));
    if (rows.length === 0) {
      throw new PgferryError(ErrorCodes.APPLY, `target: table ${tableKey(table)} does not exist; create it on the target (pgferry keeps the changes in the slot until then)`);
    }
    const types: string[] = [];
    const baseTypes: string[] = [];
    for (const col of msg.columns) {
      const t = rows.find((r) => r.name === col.name);
      if (!t) throw new PgferryError(ErrorCodes.APPLY, `target: table ${tableKey(table)} has no column "${col.name}" that the source sends; add it on the target (pgferry keeps the changes in the slot until then)`);
      if (t.generated !== '') throw new PgferryError(ErrorCodes.APPLY, `target: column "${col.name}" of ${tableKey(table)} is generated on the target but not on the source; make it a plain column`);
      if (this.strictTypes && col.typeOid < FIRST_NORMAL_OID && (Number(t.type_oid) !== col.typeOid || t.typmod !== col.typeModifier)) {
        const { rows: [source] } = await this.serial(() => this.client.query<{ type: string }>(`SELECT format_type($1::oid, $2) AS type`, [col.typeOid, col.typeModifier]));
        throw new PgferryError(ErrorCodes.APPLY, `target: column "${col.name}" of ${tableKey(table)} is ${t.type} on the target but ${source?.type ?? col.typeOid} on the source; ALTER it on the target (pgferry keeps the changes in the slot until then)`);
      }
      types.push(t.type);
      baseTypes.push(t.base_type);
    }
    const keyIndexes = msg.replicaIdentity === 'full' ? [] : msg.columns.flatMap((c, i) => (c.isKey ? [i] : []));
    if (msg.replicaIdentity !== 'full' && keyIndexes.length === 0) {
      throw new PgferryError(ErrorCodes.APPLY, `source: table ${tableKey(table)} replicates without a key; run ALTER TABLE ${qualified(table)} REPLICA IDENTITY FULL on the source`);
    }
    const all = msg.columns.map((_, i) => i);
    return {
      table,
      key: tableKey(table),
      all,
      nonKey: all.filter((i) => !keyIndexes.includes(i)),
      only: rows[0]!.relkind === 'r',
      columns: msg.columns.map((c) => c.name),
      types,
      baseTypes,
      keyIndexes,
      alwaysIdentity: msg.columns.flatMap((c, i) => (rows.find((r) => r.name === c.name)?.identity === 'a' ? [i] : [])),
    };
  }

  /**
   * Opens the target transaction (a group of one or more source transactions). Queued, not
   * awaited: the group is built while the target still runs the one before (a failure of BEGIN
   * fails every command queued after it, see {@link serial}).
   */
  begin(lockTimeoutMs?: number, after?: Promise<unknown>): void {
    const sql = lockTimeoutMs === undefined ? 'BEGIN' : `BEGIN; SET LOCAL lock_timeout = ${lockTimeoutMs}`;
    this.serial(async () => {
      await after;
      return this.client.query(sql);
    }).catch(() => {});
    this.open = true;
    this.counts = new Map();
    this.group = { endLsn: null, transactions: 0, openedAt: performance.now() };
  }

  /** Settles once everything queued on the session so far has (never rejects). */
  settled(): Promise<unknown> {
    return this.tail;
  }

  /** Makes the open transaction's lock waits fail after `ms` (error 55P03), from now on. */
  lockTimeout(ms: number): void {
    this.queueCommand(`SET LOCAL lock_timeout = ${Math.round(ms)}`);
  }

  /**
   * Applies one row change or truncate inside the open transaction. Returns a promise only when
   * the change has to wait (a batch sent, a table looked up, a statement); a row that joins its
   * table's runs returns nothing, so a backlog's rows cost no promise and no microtask each. A
   * failure may be thrown rather than returned.
   */
  change(msg: Extract<PgoutputMessage, { tag: 'insert' | 'update' | 'delete' | 'truncate' }>): Promise<void> | undefined {
    const plan = this.strict || msg.tag === 'truncate' ? undefined : this.plans.get(msg.relationOid);
    if (plan) {
      if (!this.open) this.begin();
      // The common cases of changeWaiting, decided the same way.
      if (msg.tag === 'insert') return this.insertRow(plan, msg.newTuple);
      if (plan.keyIndexes.length > 0) {
        if (msg.tag === 'delete' && msg.oldKind !== 'full') return this.keyedChange('delete', plan, [], msg.oldTuple);
        if (msg.tag === 'update' && msg.oldTuple === null && plan.alwaysIdentity.length === 0 && plan.nonKey.length > 0 && !msg.newTuple.includes(UNCHANGED_TOAST)) {
          return this.keyedChange('update', plan, plan.nonKey, msg.newTuple);
        }
      }
    }
    return this.changeWaiting(msg);
  }

  private async changeWaiting(msg: Extract<PgoutputMessage, { tag: 'insert' | 'update' | 'delete' | 'truncate' }>): Promise<void> {
    if (!this.open) this.begin();
    if (this.strict && this.runs.size > 0) await this.flush();
    switch (msg.tag) {
      case 'insert': {
        const plan = this.plans.get(msg.relationOid) ?? (await this.plan(msg.relationOid));
        if (this.strict) {
          const present = msg.newTuple.includes(UNCHANGED_TOAST) ? msg.newTuple.flatMap((v, i) => (v === UNCHANGED_TOAST ? [] : [i])) : plan.all;
          await this.exec(plan, insertStatement(plan, present), msg.newTuple, msg.newTuple, 'insert');
          return;
        }
        await this.insertRow(plan, msg.newTuple);
        return;
      }
      case 'update': {
        const plan = this.plans.get(msg.relationOid) ?? (await this.plan(msg.relationOid));
        const old = msg.oldTuple ?? msg.newTuple;
        const [match, full] = this.match(plan, old, msg.oldKind === 'full' || plan.keyIndexes.length === 0);
        for (const i of plan.alwaysIdentity) {
          if (match.includes(i) && msg.oldTuple && text(msg.oldTuple[i]) !== text(msg.newTuple[i])) {
            throw new PgferryError(ErrorCodes.APPLY, `target: column "${plan.columns[i]}" of ${plan.key} is GENERATED ALWAYS AS IDENTITY but its value changed on the source; ALTER it to GENERATED BY DEFAULT on the target`);
          }
        }
        const plain = plan.alwaysIdentity.length === 0 && !msg.newTuple.includes(UNCHANGED_TOAST);
        const set = plain ? plan.all : msg.newTuple.flatMap((v, i) => (v === UNCHANGED_TOAST || plan.alwaysIdentity.includes(i) ? [] : [i]));
        const guard = plan.alwaysIdentity.filter((i) => !match.includes(i) && msg.newTuple[i] !== UNCHANGED_TOAST);
        const setOthers = plain && !full ? plan.nonKey : set.filter((i) => !match.includes(i));
        if (!this.strict && !full && !msg.oldTuple && guard.length === 0 && setOthers.length > 0) {
          // Key unchanged: joins a set-based batch of updates to this table.
          await this.keyedChange('update', plan, setOthers, msg.newTuple);
          return;
        }
        await this.closeRun(plan.key);
        // Nothing to assign (only unchanged TOAST and identity columns): still prove the row is there.
        const stmt = set.length > 0 ? updateStatement(plan, set, match, full, guard) : matchStatement(plan, match, full, guard);
        await this.exec(plan, stmt, msg.newTuple, old, 'update');
        return;
      }
      case 'delete': {
        const plan = this.plans.get(msg.relationOid) ?? (await this.plan(msg.relationOid));
        const [match, full] = this.match(plan, msg.oldTuple, msg.oldKind === 'full' || plan.keyIndexes.length === 0);
        if (!this.strict && !full) {
          await this.keyedChange('delete', plan, [], msg.oldTuple);
          return;
        }
        await this.closeRun(plan.key);
        await this.exec(plan, deleteStatement(plan, match, full), msg.oldTuple, msg.oldTuple, 'delete');
        return;
      }
      case 'truncate': {
        const plans: RelationPlan[] = [];
        for (const oid of msg.relationOids) plans.push(await this.plan(oid));
        // No CASCADE, like the native apply worker: the source already lists every table it cascaded to,
        // and cascading here could empty target tables pgferry does not migrate.
        await this.flush();
        await this.serial(async () => {
          await this.client.query('SAVEPOINT pgferry_truncate');
          try {
            await this.client.query(truncateStatement(plans, msg.restartIdentity));
          } catch (err) {
            if ((err as { code?: string }).code !== '0A000' || !/foreign key/.test(describeError(err))) throw err;
            // A foreign key of a table not in the list refers to one of them: after a resumed copy,
            // a table the TRUNCATE also emptied but whose copy already holds that (so it is left
            // out here). The rows go by DELETE, which the foreign key (replica role) does not stop.
            await this.client.query('ROLLBACK TO SAVEPOINT pgferry_truncate');
            this.log.warn(
              { tables: plans.map((p) => p.key), reason: describeError(err), restartIdentity: msg.restartIdentity },
              `TRUNCATE refused on the target; deleting the rows instead${msg.restartIdentity ? ' (their sequences are not restarted: the cutover moves them forward only)' : ''}`,
            );
            for (const p of plans) await this.client.query(`DELETE FROM ${p.only ? 'ONLY ' : ''}${qualified(p.table)}`);
          }
          await this.client.query('RELEASE SAVEPOINT pgferry_truncate');
        });
        for (const p of plans) this.count(p, 'truncate');
        return;
      }
    }
  }

  /**
   * Sends everything buffered, in order: afterwards the target transaction holds every change
   * received so far. Call it before running anything else in the apply session.
   */
  async flush(): Promise<void> {
    await this.send();
    await this.drain();
  }

  /** Closes every run and sends the statement batch, without waiting for its answer. */
  private async send(): Promise<void> {
    for (const table of [...this.runs.keys()]) await this.closeRun(table);
    await this.flushStatements();
  }

  /**
   * Applies one captured source statement at its point in the source transaction, inside the open
   * target transaction (so it commits with the surrounding changes and the progress row: never
   * twice, never lost). Names resolve against the source session's search path. Afterwards every
   * table the source reported must have the source's columns (name, type, modifier) on the target.
   * A statement pgferry does not apply, or one that fails on the target, stops apply unless the
   * target already matches the source's result (it was altered by hand): then apply goes on.
   * The relation cache is dropped: the next change of each table resolves the new shape.
   */
  async ddl(payload: DdlPayload): Promise<void> {
    if (!this.open) this.begin();
    await this.flush();
    // One command sequence on the session: nothing else (a durability poll) runs in between.
    await this.serial(() => this.applyDdl(payload));
  }

  private async applyDdl(payload: DdlPayload): Promise<void> {
    const plan = planDdl(payload);
    const statement = oneLine(plan.kind === 'execute' ? plan.statements.join('; ') : payload.query);
    let failure: string | null = plan.kind === 'unsupported' ? plan.reason : null;
    if (plan.kind === 'execute') {
      await this.client.query('SAVEPOINT pgferry_ddl');
      try {
        const { rows: [saved] } = await this.client.query<{ path: string }>(`SELECT current_setting('search_path') AS path, set_config('search_path', $1, true)`, [
          payload.searchPath.map((s) => ident(s)).join(', ') || "''",
        ]);
        // Extended protocol: exactly one statement each, whatever the source's query text held.
        for (const sql of plan.statements) await this.client.query({ text: sql, queryMode: 'extended' } as pg.QueryConfig);
        await this.client.query(`SELECT set_config('search_path', $1, true)`, [saved!.path]);
        await this.client.query('RELEASE SAVEPOINT pgferry_ddl');
      } catch (err) {
        await this.client.query('ROLLBACK TO SAVEPOINT pgferry_ddl');
        failure = err instanceof Error ? err.message : String(err);
      }
    }
    this.plans.clear();
    const difference = await this.differenceFromSource(payload);
    if (failure === null && difference === null) {
      this.log.info({ statement }, 'applied DDL captured on the source');
      return;
    }
    if (difference === null) {
      this.log.warn({ statement, reason: failure }, 'the target already matches the source after this DDL (altered by hand?); going on');
      return;
    }
    const why = failure ?? difference;
    throw new PgferryError(
      ErrorCodes.APPLY,
      `target: cannot apply the source's DDL "${statement}" (${why}); ${failure ? `${difference}; ` : ''}make the same change on the target by hand (pgferry keeps the changes in the slot and goes on once the target matches)`,
    );
  }

  /** Null when the target matches what the source reported after a statement, else the first difference. */
  private async differenceFromSource(payload: DdlPayload): Promise<string | null> {
    for (const t of payload.tables) {
      const { rows } = await this.client.query<{ name: string; type: string; typmod: number }>(
        `SELECT a.attname AS name, n.nspname || '.' || ty.typname AS type, a.atttypmod AS typmod
           FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid JOIN pg_namespace n ON n.oid = ty.typnamespace
          WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
        [t.identity],
      );
      if (rows.length === 0) return `table ${t.identity} does not exist on the target`;
      for (const c of t.columns) {
        const mine = rows.find((r) => r.name === c.name);
        if (!mine) return `table ${t.identity} has no column "${c.name}" on the target`;
        if (mine.type !== c.type || mine.typmod !== c.typmod) return `column "${c.name}" of ${t.identity} is ${mine.type} (typmod ${mine.typmod}) on the target, ${c.type} (typmod ${c.typmod}) on the source`;
      }
      const extra = rows.find((r) => !t.columns.some((c) => c.name === r.name));
      if (extra) return `table ${t.identity} has a column "${extra.name}" on the target that the source no longer has`;
    }
    for (const identity of payload.droppedTables) {
      const { rows: [r] } = await this.client.query<{ present: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS present`, [identity]);
      if (r?.present) return `table ${identity} was dropped on the source but exists on the target`;
    }
    for (const e of payload.enums) {
      const { rows: [r] } = await this.client.query<{ labels: string[] | null }>(
        `SELECT array_agg(enumlabel::text ORDER BY enumsortorder) AS labels FROM pg_enum WHERE enumtypid = to_regtype($1)`,
        [e.identity],
      );
      if (JSON.stringify(r?.labels ?? []) !== JSON.stringify(e.labels)) return `enum ${e.identity} has labels ${JSON.stringify(r?.labels ?? [])} on the target, ${JSON.stringify(e.labels)} on the source`;
    }
    return null;
  }

  /**
   * Marks the end of the source transaction ending at `endLsn`. Its changes stay in the open target
   * transaction, which may hold several source transactions (a group): many small transactions
   * then cost one target commit. Nothing is durable until {@link commitGroup}.
   * Returns false when no group is open (the transaction had nothing to apply).
   */
  endTransaction(endLsn: Lsn): boolean {
    if (!this.open) return false;
    this.group.endLsn = endLsn;
    this.group.transactions++;
    return true;
  }

  /** A target transaction holds applied but uncommitted source transactions. */
  get groupOpen(): boolean {
    return this.open;
  }

  /** The open group is big or old enough to commit now (bounds lag and the target transaction's size). */
  groupDue(): boolean {
    return this.open && (this.group.transactions >= GROUP_TRANSACTIONS || performance.now() - this.group.openedAt >= GROUP_MS);
  }

  /**
   * Commits the open group, with the end LSN of its last complete source transaction stored in the
   * same target transaction. Changes of an unfinished source transaction must not be in the group:
   * call it only between transactions. Returns once the commit is queued on the session (the next
   * group can be built meanwhile); `committed` settles when the target has answered, and rejects
   * when it failed, after which every later command fails too (see {@link serial}), so no group
   * commits after a failed one. The apply session commits asynchronously, as the native apply
   * worker does: the group is durable only once the target's WAL is flushed to `targetLsn` (see
   * {@link walPositions}); with `durable`, the commit waits for that flush, which makes every
   * earlier group durable too. Returns null when there was nothing to commit.
   */
  async commitGroup(opts: { durable?: boolean; parts?: PreparedPart[] } = {}): Promise<QueuedCommit | null> {
    if (!this.open || this.group.endLsn === null) return null;
    await this.send();
    this.inFlight = []; // the commit below is queued after them, and fails with them
    const endLsn = this.group.endLsn;
    const parts = opts.parts ?? [];
    const counts = this.counts;
    // Queued, not awaited: the next group is built while the target commits this one.
    const committed = this.serial(async () => {
      // Every part prepared (durable, and sure to commit) before the progress row commits; see Lanes.
      // Their counts are complete once prepared (each batch counts its rows when answered).
      for (const part of parts) {
        await part.prepared;
        mergeCounts(counts, part.counts);
      }
      if (parts.length > 0) {
        // Released after the last COMMIT PREPARED (or with the session, after a failure).
        await lockShares(this.client, this.slot);
        const { rows: left } = await this.client.query<{ gid: string }>('SELECT gid FROM pg_catalog.pg_prepared_xacts WHERE gid = ANY($1::text[])', [parts.map((p) => p.gid)]);
        if (left.length !== parts.length) {
          // The others were prepared after that run settled shares: nobody would settle them (this
          // run is about to lose the migration), and they would hold their rows' locks. Rolled back
          // under the lock, outside this session's transaction (which fails anyway).
          try {
            await this.client.query('ROLLBACK');
            for (const { gid } of left) await this.client.query(`ROLLBACK PREPARED ${literal(gid)}`);
          } finally {
            await unlockShares(this.client, this.slot).catch(() => {}); // or with the session
          }
          throw new PgferryError(ErrorCodes.APPLY, `target: the prepared shares of the group ending at ${formatLsn(endLsn)} were settled by another run (a second pgferry on this migration?); the group is applied again`, { retryable: true });
        }
      }
      await saveAppliedLsn(this.client, this.slot, endLsn);
      const commit = `${opts.durable ? 'SET LOCAL synchronous_commit = on; ' : ''}COMMIT`;
      const positions = 'SELECT pg_current_wal_insert_lsn()::text AS inserted, pg_current_wal_flush_lsn()::text AS flushed';
      if (parts.length > 0 && lastResult(await this.client.query(commit)).command !== 'COMMIT') {
        throw new PgferryError(ErrorCodes.APPLY, 'target: the group rolled back at its commit; its prepared shares are rolled back at the next start');
      }
      // Each alone: COMMIT PREPARED cannot run in a multi-statement query's implicit transaction.
      for (const part of parts) await this.client.query(`COMMIT PREPARED ${literal(part.gid)}`);
      if (parts.length > 0) await unlockShares(this.client, this.slot);
      const results = (await this.client.query(parts.length > 0 ? positions : `${commit}; ${positions}`)) as unknown as
        | pg.QueryResult<{ inserted: string; flushed: string }>
        | pg.QueryResult<{ inserted: string; flushed: string }>[];
      const wal = (Array.isArray(results) ? results[results.length - 1]! : results).rows[0]!;
      return { targetLsn: this.recordEnd(parseLsn(wal.inserted)), flushedLsn: parseLsn(wal.flushed) };
    });
    committed.catch(() => {}); // the caller awaits it
    this.open = false;
    return { lsn: endLsn, sessions: 1 + parts.length, transactions: this.group.transactions, counts, committed };
  }

  /**
   * Ends this session's share of a group split across sessions (see Lanes): sends what is buffered
   * and queues `PREPARE TRANSACTION gid`, so the share survives anything until the session holding
   * the progress row commits the group and then commits every prepared share. Returns null when the
   * session has no open transaction (it got no change of this group).
   */
  async prepare(gid: string): Promise<PreparedPart | null> {
    if (!this.open) return null;
    await this.send();
    this.inFlight = []; // PREPARE is queued after them, and fails with them
    const prepared = this.serial(async () => {
      // In a failed transaction PREPARE answers ROLLBACK rather than an error: the share would be gone.
      if ((await this.client.query(`PREPARE TRANSACTION ${literal(gid)}`)).command !== 'PREPARE') {
        throw new PgferryError(ErrorCodes.APPLY, `target: the share ${gid} of a group rolled back at its PREPARE`);
      }
    });
    prepared.catch(() => {}); // awaited by the commit of the group
    this.open = false;
    return { gid, prepared, counts: this.counts };
  }

  /**
   * The end of the last WAL record for an insert position: when the last record ended exactly at a
   * page boundary, the insert position points just past the next page's header (24 bytes, 40 on a
   * segment's first page), where the flush position does not go until the next record: comparing
   * with it would hold confirmations back on an idle target. Only exactly the header's end is
   * moved back (a record continued onto a page ends after its header, never at it).
   */
  private recordEnd(inserted: Lsn): Lsn {
    const offset = inserted % this.wal.blockSize;
    const header = inserted % this.wal.segmentSize < this.wal.blockSize ? 40n : 24n;
    return offset === header ? inserted - offset : inserted;
  }

  /**
   * The target's WAL positions now: everything committed so far ends at or before `inserted`, and
   * every group whose `targetLsn` is at or below `flushed` is durable.
   */
  async walPositions(): Promise<{ inserted: Lsn; flushed: Lsn }> {
    const { rows } = await this.serial(() => this.client.query<{ inserted: string; flushed: string }>('SELECT pg_current_wal_insert_lsn()::text AS inserted, pg_current_wal_flush_lsn()::text AS flushed'));
    return { inserted: this.recordEnd(parseLsn(rows[0]!.inserted)), flushed: parseLsn(rows[0]!.flushed) };
  }

  /**
   * Makes every group committed so far durable now, rather than at the WAL writer's next rounds
   * (up to three `wal_writer_delay`s): one small synchronous transaction touching the progress row
   * (so it has a commit record to flush), whose flush covers all WAL before it. Only between
   * groups. Returns the target's WAL flush position afterwards.
   */
  async flushWal(): Promise<Lsn> {
    if (this.open) throw new PgferryError(ErrorCodes.APPLY, 'internal: WAL flush requested inside a group');
    return this.serial(async () => {
      await this.client.query('BEGIN; SET LOCAL synchronous_commit = on');
      await saveAppliedLsn(this.client, this.slot, 0n); // greatest(): only updated_at changes
      await this.client.query('COMMIT');
      const { rows } = await this.client.query<{ flushed: string }>('SELECT pg_current_wal_flush_lsn()::text AS flushed');
      return parseLsn(rows[0]!.flushed);
    });
  }

  /** Rolls back an open transaction (after a failure; safe to call at any time). */
  async rollback(): Promise<void> {
    this.runs.clear();
    this.runBytes = 0;
    this.statements = [];
    this.statementBytes = 0;
    this.inFlight = []; // their failure (if any) is why we roll back; ROLLBACK queues behind them
    if (!this.open && this.failure === null) return; // nothing open, nothing failed: no ROLLBACK warning in the target's log
    const rollback = async (): Promise<void> => {
      this.failure = null;
      await this.client.query('ROLLBACK'); // outside a transaction only a warning
    };
    const done = this.tail.then(rollback, rollback);
    this.tail = done.catch(() => {});
    this.open = false;
    await done;
  }

  /** Adds one insert to its table's runs, closing them first when it cannot join. A promise only when something is sent. */
  private insertRow(plan: RelationPlan, tuple: TupleValue[]): Promise<void> | undefined {
    const present = tuple.includes(UNCHANGED_TOAST) ? tuple.flatMap((v, i) => (v === UNCHANGED_TOAST ? [] : [i])) : plan.all;
    const presentKey = present === plan.all ? '' : present.join(',');
    const key = plan.keyIndexes.length > 0 ? keyOf(plan, tuple) : null;
    const found = this.runsFor(plan, key, 'insert', presentKey);
    if (found instanceof Promise) return found.then((runs) => this.addInsert(runs, present, presentKey, key, tuple));
    return this.addInsert(found, present, presentKey, key, tuple);
  }

  private addInsert(runs: TableRuns, present: number[], presentKey: string, key: string | null, tuple: TupleValue[]): Promise<void> | undefined {
    runs.insert ??= { present, presentKey, tuples: [] };
    if (key !== null) runs.keys.set(key, runs.insert.tuples.length * 4 + IN_INSERT);
    runs.insert.tuples.push(tuple);
    return this.grow(runs, tupleBytes(tuple));
  }

  /** Adds one update or delete by key to its table's runs, closing them first when it cannot join. A promise only when something is sent. */
  private keyedChange(op: 'update' | 'delete', plan: RelationPlan, set: number[], tuple: TupleValue[]): Promise<void> | undefined {
    const key = keyOf(plan, tuple);
    const merged = op === 'update' ? this.mergeUpdate(plan, key, set, tuple) : null;
    if (merged) return this.grow(merged.runs, merged.bytes);
    const row: (string | null)[] = [];
    for (const i of plan.keyIndexes) row.push(text(tuple[i]));
    for (const i of set) row.push(text(tuple[i]));
    const found = this.runsFor(plan, key, op, set);
    if (found instanceof Promise) return found.then((runs) => this.addKeyed(runs, op, set, key, row));
    return this.addKeyed(found, op, set, key, row);
  }

  private addKeyed(runs: TableRuns, op: 'update' | 'delete', set: number[], key: string, row: (string | null)[]): Promise<void> | undefined {
    const run = (runs[op] ??= { set, rows: [] });
    runs.keys.set(key, run.rows.length * 4 + (op === 'update' ? IN_UPDATE : IN_DELETE));
    run.rows.push(row);
    return this.grow(runs, tupleBytes(row));
  }

  /**
   * An update (key unchanged) of a row whose insert or update is still in its table's runs: the
   * new values replace that row's there, and the change costs the target nothing (a hot row
   * updated by every transaction of a group is written once). Exact because the group commits
   * atomically and the update carries every value it sets: it takes the place of an update
   * setting the same columns, or of an insert of every column when it sets every other column
   * (no unchanged TOAST value). A unique value moved between rows can now collide inside one
   * statement: that is a constraint violation, which replays the group in source order (see
   * {@link strict}). Returns the runs and how many bytes the row grew by (for the limits, see
   * {@link grow}), or null when it cannot (the caller sends the runs first).
   */
  private mergeUpdate(plan: RelationPlan, key: string, set: number[], tuple: TupleValue[]): { runs: TableRuns; bytes: number } | null {
    const runs = this.runs.get(plan.key);
    const slot = runs?.plan === plan ? runs.keys.get(key) : undefined;
    if (!runs || slot === undefined) return null;
    const at = slot >>> 2;
    let bytes: number;
    if ((slot & 3) === IN_UPDATE && runs.update && sameColumns(runs.update.set, set)) {
      const row = runs.update.rows[at]!;
      bytes = -tupleBytes(row);
      const offset = plan.keyIndexes.length;
      for (let n = 0; n < set.length; n++) row[offset + n] = text(tuple[set[n]!]);
      bytes += tupleBytes(row);
    } else if ((slot & 3) === IN_INSERT && runs.insert?.presentKey === '' && set === plan.nonKey) {
      bytes = tupleBytes(tuple) - tupleBytes(runs.insert.tuples[at]!);
      runs.insert.tuples[at] = tuple;
    } else {
      return null;
    }
    this.countsFor(plan).update++; // applied, though no statement counts it
    return { runs, bytes };
  }

  /**
   * The open runs of `plan`'s table that a change with `key` may join: when the key is already in
   * them (a second change to the same row), the table's relation changed, or its `op` run has
   * another shape (inserts: other columns present, `shape` their presentKey; updates: other
   * columns set, `shape` them), the runs are closed first and fresh ones returned. A promise only
   * when something had to be sent (the common case costs no microtask).
   */
  private runsFor(plan: RelationPlan, key: string | null, op: 'insert' | 'update' | 'delete', shape: string | number[]): TableRuns | Promise<TableRuns> {
    const runs = this.runs.get(plan.key);
    if (runs && (runs.plan !== plan || (key !== null && runs.keys.has(key)) || !fits(runs, op, shape))) return this.closeRun(plan.key).then(() => this.newRuns(plan));
    return runs ?? this.newRuns(plan);
  }

  private newRuns(plan: RelationPlan): TableRuns {
    const runs: TableRuns = { plan, insert: null, update: null, delete: null, keys: new Map(), bytes: 0 };
    this.runs.set(plan.key, runs);
    return runs;
  }

  /**
   * Accounts for a row added to `runs`; closes them when full, and every run when they hold too
   * much together. A promise only when something is sent.
   */
  private grow(runs: TableRuns, bytes: number): Promise<void> | undefined {
    runs.bytes += bytes;
    this.runBytes += bytes;
    const full = (runs.insert?.tuples.length ?? 0) >= INSERT_BATCH_ROWS || (runs.update?.rows.length ?? 0) >= KEYED_BATCH_ROWS || (runs.delete?.rows.length ?? 0) >= KEYED_BATCH_ROWS;
    if (full || runs.bytes >= BATCH_BYTES) return this.closeRun(runs.plan.key).then(() => (this.runBytes >= RUN_BYTES ? this.send() : undefined));
    return this.runBytes >= RUN_BYTES ? this.send() : undefined;
  }

  /**
   * Ends `table`'s runs, deletes, updates, inserts (see {@link TableRuns}): updates and deletes, and
   * short insert runs, become one statement each in the batch; a long insert run goes as one COPY
   * in text format (after the batch, which may hold this table's earlier changes). Either way every
   * row must land, or apply stops. Returns undefined.
   */
  private async closeRun(table: string): Promise<undefined> {
    const runs = this.runs.get(table);
    if (!runs) return undefined;
    this.runs.delete(table);
    this.runBytes -= runs.bytes;
    const { plan } = runs;
    for (const op of ['delete', 'update'] as const) {
      const run = runs[op];
      if (!run) continue;
      const sql = op === 'update' ? updateByKeysStatement(plan, run.set, run.rows) : deleteByKeysStatement(plan, run.rows);
      const keys = run.rows.slice(0, NAMED_KEYS).map((r) => (plan.keyIndexes.length === 1 && r[0] !== null ? r[0]! : JSON.stringify(r.slice(0, plan.keyIndexes.length))));
      await this.queue({ sql, plan, op, rows: run.rows.length, keys });
    }
    const run = runs.insert;
    if (!run) return undefined;
    const rows = run.tuples.length;
    if (rows < COPY_MIN_ROWS) {
      const values = run.tuples.map((t) => run.present.map((i) => text(t[i])));
      await this.queue({ sql: insertRowsStatement(plan, run.present, values), plan, op: 'insert', rows, keys: [] });
      return undefined;
    }
    await this.flushStatements();
    // Encoded row by row into one buffer: a string of megabytes would live in V8's old space until
    // a full collection (the process's peak memory), while the buffer goes at the next scavenge.
    // Sized for the rows' characters (their bytes when plain ASCII, as most are), grown when not.
    let body: Buffer = Buffer.allocUnsafe(Math.ceil(runs.bytes * 1.1) + 65_536);
    let at = 0;
    const put = (chars: string): void => {
      if (body.length - at < chars.length * 3) {
        const need = at + Buffer.byteLength(chars);
        if (need > body.length) body = grown(body, at, need);
      }
      at += body.write(chars, at);
    };
    let some = '';
    const line: (string | null)[] = new Array<string | null>(run.present.length);
    for (const t of run.tuples) {
      for (let n = 0; n < line.length; n++) line[n] = text(t[run.present[n]!]);
      some += copyTextLine(line);
      if (some.length >= 16_384) {
        put(some); // a few rows at a time: one write per row costs more than its encoding
        some = '';
      }
    }
    put(some);
    // Exact when much was left over (grown, or the estimate held the table's other runs): the COPY
    // in flight holds this memory.
    body = at < body.length * 0.75 ? Buffer.from(body.subarray(0, at)) : body.subarray(0, at);
    run.tuples = []; // the rows live on only as the COPY body
    const counts = this.counts;
    // Counted as allocated (up to twice the rows' bytes after growing): that is the memory held.
    await this.pipelined(body.buffer.byteLength, async () => {
      const copy = this.client.query(copyStreams.from(copyInStatement(plan, run.present)));
      await pipeline(Readable.from([body]), copy).catch((err: unknown) => naming(err, [plan.key])); // one chunk: per-row writes cost more than the COPY itself
      if (copy.rowCount !== rows) {
        throw new PgferryError(ErrorCodes.APPLY, `target: COPY into ${table} stored ${copy.rowCount} of ${rows} rows`);
      }
      countsFor(counts, plan).insert += rows;
    });
    return undefined;
  }

  /** Sends the statement batch in one round trip and checks that each statement touched exactly its rows. */
  private async flushStatements(): Promise<void> {
    const batch = this.statements;
    if (batch.length === 0) return;
    this.statements = [];
    this.statementBytes = 0;
    const sql = batch.map((s) => s.sql).join(';\n');
    const counts = this.counts; // this group's, even if the answer comes after the next group began
    await this.pipelined(sql.length, async () => {
      const results = await this.client.query(sql).catch((err: unknown) => naming(err, batch.map((b) => b.plan.key)));
      this.check(batch, results as pg.QueryResult | pg.QueryResult[], counts);
    });
  }

  /**
   * Queues `work` (a statement batch or a COPY of `bytes`) on the apply session and returns at
   * once unless {@link IN_FLIGHT} are already unanswered, or more than one holding over
   * {@link IN_FLIGHT_BYTES} together (then it waits for the oldest): the next batches are decoded
   * and built while the target runs these, and memory stays bounded.
   */
  private async pipelined(bytes: number, work: () => Promise<void>): Promise<void> {
    const current = this.serial(work);
    this.unanswered++;
    const answered = (): void => void this.unanswered--;
    current.then(answered, answered);
    current.catch(() => {}); // surfaces at the next wait, see drain()
    this.inFlight.push({ done: current, bytes });
    let total = 0;
    for (const f of this.inFlight) total += f.bytes;
    while (this.inFlight.length > IN_FLIGHT || (this.inFlight.length > 1 && total > IN_FLIGHT_BYTES)) {
      const oldest = this.inFlight.shift()!;
      total -= oldest.bytes;
      await oldest.done;
    }
  }

  /**
   * Runs `work` on the apply session after everything queued before it has settled: one command
   * at a time on the connection (node-postgres deprecates queueing on a busy client), while the
   * caller goes on building the next batch.
   */
  private serial<T>(work: () => Promise<T>): Promise<T> {
    const guarded = async (): Promise<T> => {
      // After a failure nothing more runs (a group must never commit after one that failed) until rollback().
      if (this.failure !== null) throw this.failure;
      try {
        return await work();
      } catch (err) {
        this.failure ??= err;
        throw err;
      }
    };
    const next = this.tail.then(guarded, guarded);
    this.tail = next.catch(() => {});
    return next;
  }

  /** Waits for the batches in flight and surfaces the first failure. */
  private async drain(): Promise<void> {
    const pending = this.inFlight;
    this.inFlight = [];
    for (const p of pending) await p.done;
  }

  /** Each statement of a batch must have touched exactly its rows. */
  private check(batch: QueuedStatement[], result: pg.QueryResult | pg.QueryResult[], counts: ChangeCounts): void {
    const results = Array.isArray(result) ? result : [result];
    batch.forEach((s, i) => {
      const rows = results[i]?.rowCount ?? 0;
      if (rows !== s.rows) {
        const keys = s.keys.length > 0 ? ` (${s.rows === 1 ? 'key' : 'one of the keys'} ${s.keys.join(', ')}${s.rows > s.keys.length ? ', ...' : ''})` : '';
        throw new PgferryError(
          ErrorCodes.APPLY,
          `target: ${s.op} on ${tableKey(s.plan.table)} matched ${rows} rows instead of ${s.rows}${keys}; the target has diverged from the source`,
        );
      }
      countsFor(counts, s.plan)[s.op] += s.rows;
    });
  }

  private async queue(entry: QueuedStatement): Promise<void> {
    this.statements.push(entry);
    this.statementBytes += entry.sql.length;
    // A batch of many rows goes at once to an idle session: the target would wait for the rest otherwise.
    if (this.statements.length >= STATEMENT_BATCH || this.statementBytes >= BATCH_BYTES || (this.unanswered === 0 && entry.rows >= COPY_MIN_ROWS)) await this.flushStatements();
  }

  private async plan(oid: number): Promise<RelationPlan> {
    const cached = this.plans.get(oid);
    if (cached) return cached;
    const msg = this.relations.get(oid);
    if (!msg) throw new PgferryError(ErrorCodes.PROTOCOL, `source: change for relation ${oid} arrived before its Relation message`);
    const plan = await this.resolve(msg);
    this.plans.set(oid, plan);
    return plan;
  }

  /** Which old-tuple columns identify the row: the key, or for FULL every sent (non-TOAST-skipped) column. */
  private match(plan: RelationPlan, old: TupleValue[], full: boolean): [number[], boolean] {
    if (!full) return [plan.keyIndexes, false];
    return [old.flatMap((v, i) => (v === UNCHANGED_TOAST ? [] : [i])), true];
  }

  /** Queues one statement with its values inlined; the batch is sent when full or before anything else. */
  private async exec(plan: RelationPlan, stmt: Statement, tuple: TupleValue[], old: TupleValue[], op: 'insert' | 'update' | 'delete'): Promise<void> {
    const sql = inlineParams(stmt.sql, stmt.params.map((p) => text(p >= 0 ? tuple[p] : old[-1 - p])));
    const key = plan.keyIndexes.map((k) => text(old[k]));
    await this.queue({ sql, plan, op, rows: 1, keys: key.length > 0 ? [JSON.stringify(key)] : [] });
  }

  private count(plan: RelationPlan, op: 'insert' | 'update' | 'delete' | 'truncate'): void {
    this.countsFor(plan)[op]++;
  }

  private countsFor(plan: RelationPlan): { insert: number; update: number; delete: number; truncate: number } {
    return countsFor(this.counts, plan);
  }

}

/** The last statement's result of a simple query (one result, or one per statement). */
function lastResult(r: pg.QueryResult | pg.QueryResult[]): pg.QueryResult {
  return Array.isArray(r) ? r[r.length - 1]! : r;
}

function mergeCounts(into: ChangeCounts, from: ChangeCounts): void {
  for (const [table, c] of from) {
    const mine = into.get(table);
    if (!mine) into.set(table, { ...c });
    else for (const op of ['insert', 'update', 'delete', 'truncate'] as const) mine[op] += c[op];
  }
}

function countsFor(counts: ChangeCounts, plan: RelationPlan): { insert: number; update: number; delete: number; truncate: number } {
  let c = counts.get(plan.key);
  if (!c) counts.set(plan.key, (c = { insert: 0, update: 0, delete: 0, truncate: 0 }));
  return c;
}

/** A row's replica identity key as one string, for telling rows apart within a group. */
function keyOf(plan: RelationPlan, tuple: TupleValue[]): string {
  if (plan.keyIndexes.length === 1) {
    const v = text(tuple[plan.keyIndexes[0]!]);
    if (v !== null) return v;
  }
  return JSON.stringify(plan.keyIndexes.map((i) => text(tuple[i])));
}

/** Whether a change of `op` with `shape` (see {@link Applier.runsFor}) can join that run of `runs`. */
function fits(runs: TableRuns, op: 'insert' | 'update' | 'delete', shape: string | number[]): boolean {
  if (op === 'insert') return !runs.insert || runs.insert.presentKey === shape;
  const run = runs[op];
  return !run || sameColumns(run.set, shape as number[]);
}

function sameColumns(a: number[], b: number[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A copy of the first `used` bytes of `buf` in a buffer of at least `need` bytes (twice the size, or more). */
function grown(buf: Buffer, used: number, need: number): Buffer {
  const next = Buffer.allocUnsafe(Math.max(need, buf.length * 2));
  buf.copy(next, 0, 0, used);
  return next;
}

/** A statement for a one-line message: whitespace runs collapsed, long ones cut. */
function oneLine(sql: string): string {
  const flat = sql.replace(/\s+/g, ' ').trim();
  return flat.length > 300 ? `${flat.slice(0, 300)}...` : flat;
}

function tupleBytes(t: readonly (TupleValue | undefined)[]): number {
  let n = 0;
  for (const v of t) n += typeof v === 'string' ? v.length + 1 : 4;
  return n;
}

/** A tuple value as a text parameter. Binary values are never requested, so they cannot occur. */
function text(v: TupleValue | undefined): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v;
  throw new PgferryError(ErrorCodes.PROTOCOL, 'source: unexpected binary or unchanged-TOAST value where a value is required');
}

/** Rethrows a server error with the table(s) its statement wrote to recorded on it (see {@link withTables}); others unchanged. */
function naming(err: unknown, tables: string[]): never {
  throw err instanceof Error && 'severity' in err ? withTables(err, tables) : err;
}
