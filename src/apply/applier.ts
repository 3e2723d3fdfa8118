import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { PgferryError, ErrorCodes } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Lsn } from '../protocol/lsn.js';
import { UNCHANGED_TOAST, type PgoutputMessage, type TupleValue } from '../protocol/pgoutput.js';
import { ident, qualified, tableKey, type TableName } from '../pg/connection.js';
import { copyInStatement, copyTextLine, deleteByKeysStatement, deleteStatement, inlineParams, updateByKeysStatement, insertStatement, matchStatement, truncateStatement, updateStatement, type RelationPlan, type Statement } from './statements.js';
import { saveAppliedLsn } from './state-store.js';
import { planDdl, type DdlPayload } from '../ddl/ddl-message.js';

type RelationMessage = Extract<PgoutputMessage, { tag: 'relation' }>;

/** Batch bounds: memory stays bounded whatever the transaction size. */
const INSERT_BATCH_ROWS = 5_000;
const STATEMENT_BATCH = 500;
const KEYED_BATCH_ROWS = 1_000;
/** A group commits after this many source transactions or this long since it opened, whichever first. */
const GROUP_TRANSACTIONS = 1_000;
const GROUP_MS = 200;
const BATCH_BYTES = 2 * 1024 * 1024;
/** Fewer consecutive inserts than this go as INSERT statements in the statement batch, more as COPY. */
const COPY_MIN_ROWS = 8;

/** Types below this OID are built in: the same OID on every server version pgferry supports. */
const FIRST_NORMAL_OID = 16384;

/** Counts of what one transaction did, per table and operation. */
export type ChangeCounts = Map<string, { insert: number; update: number; delete: number; truncate: number }>;

/**
 * Applies decoded transactions to the target the way PostgreSQL's apply worker does: in source
 * commit order, with `session_replication_role = replica` so target triggers and foreign keys do
 * not fire again. Consecutive source transactions may share one target transaction (a group); the
 * end LSN of the group's last source transaction is written to pgferry's state table inside that
 * same target transaction, so data and progress commit (or vanish) together.
 *
 * Every change must touch exactly one row; anything else means the target diverged, and apply
 * stops with an error rather than silently skipping (the slot keeps the change for a retry).
 */
export class Applier {
  private readonly relations = new Map<number, RelationMessage>();
  private readonly plans = new Map<number, RelationPlan>();
  private open = false;
  /** Consecutive inserts into one table with the same columns, not yet sent. */
  private inserts: { key: string; plan: RelationPlan; present: number[]; tuples: TupleValue[][]; bytes: number } | null = null;
  /** Statements not yet sent, in source order; they go in one simple-query round trip. */
  private statements: { sql: string; plan: RelationPlan; op: 'insert' | 'update' | 'delete'; rows: number; keys: string[] }[] = [];
  /** A run of updates (same columns) or deletes to one table by distinct keys, to send as one statement. */
  private keyed: { op: 'update' | 'delete'; plan: RelationPlan; set: number[]; rows: (string | null)[][]; keys: Set<string>; bytes: number } | null = null;
  private statementBytes = 0;
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
    // standard_conforming_strings: inlined literals must not treat backslashes as escapes.
    await this.client.query(`SET session_replication_role = replica; SET standard_conforming_strings = on`);
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

  /** Maps a relation onto its target table, checked against the target catalog. */
  private async resolve(msg: RelationMessage): Promise<RelationPlan> {
    const table: TableName = { schema: msg.namespace, name: msg.name };
    const { rows } = await this.client.query<{ name: string; type: string; base_type: string; identity: string; generated: string; relkind: string; type_oid: number; typmod: number }>(
      `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attidentity AS identity, a.attgenerated AS generated,
              a.atttypid::int8::float8 AS type_oid, a.atttypmod AS typmod,
              (SELECT format('%I.%I', n.nspname, ty.typname) FROM pg_type ty JOIN pg_namespace n ON n.oid = ty.typnamespace WHERE ty.oid = a.atttypid) AS base_type,
              (SELECT relkind FROM pg_class WHERE oid = a.attrelid) AS relkind
         FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
      [qualified(table)],
    );
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
        const { rows: [source] } = await this.client.query<{ type: string }>(`SELECT format_type($1::oid, $2) AS type`, [col.typeOid, col.typeModifier]);
        throw new PgferryError(ErrorCodes.APPLY, `target: column "${col.name}" of ${tableKey(table)} is ${t.type} on the target but ${source?.type ?? col.typeOid} on the source; ALTER it on the target (pgferry keeps the changes in the slot until then)`);
      }
      types.push(t.type);
      baseTypes.push(t.base_type);
    }
    const keyIndexes = msg.replicaIdentity === 'full' ? [] : msg.columns.flatMap((c, i) => (c.isKey ? [i] : []));
    if (msg.replicaIdentity !== 'full' && keyIndexes.length === 0) {
      throw new PgferryError(ErrorCodes.APPLY, `source: table ${tableKey(table)} replicates without a key; run ALTER TABLE ${qualified(table)} REPLICA IDENTITY FULL on the source`);
    }
    return {
      table,
      only: rows[0]!.relkind === 'r',
      columns: msg.columns.map((c) => c.name),
      types,
      baseTypes,
      keyIndexes,
      alwaysIdentity: msg.columns.flatMap((c, i) => (rows.find((r) => r.name === c.name)?.identity === 'a' ? [i] : [])),
    };
  }

  /** Opens the target transaction (a group of one or more source transactions). */
  async begin(): Promise<void> {
    await this.client.query('BEGIN');
    this.open = true;
    this.counts = new Map();
    this.group = { endLsn: null, transactions: 0, openedAt: performance.now() };
  }

  /** Applies one row change or truncate inside the open transaction. */
  async change(msg: Extract<PgoutputMessage, { tag: 'insert' | 'update' | 'delete' | 'truncate' }>): Promise<void> {
    if (!this.open) await this.begin();
    if (msg.tag !== 'insert') await this.flushInserts(); // changes apply in source order
    switch (msg.tag) {
      case 'insert': {
        await this.closeKeyed();
        const plan = await this.plan(msg.relationOid);
        const present = msg.newTuple.flatMap((v, i) => (v === UNCHANGED_TOAST ? [] : [i]));
        const key = `${msg.relationOid}:${present.join(',')}`;
        if (this.inserts && (this.inserts.key !== key || this.inserts.plan !== plan)) await this.flushInserts();
        const batch = (this.inserts ??= { key, plan, present, tuples: [], bytes: 0 });
        batch.tuples.push(msg.newTuple);
        batch.bytes += tupleBytes(msg.newTuple);
        if (batch.tuples.length >= INSERT_BATCH_ROWS || batch.bytes >= BATCH_BYTES) await this.flushInserts();
        return;
      }
      case 'update': {
        const plan = await this.plan(msg.relationOid);
        const old = msg.oldTuple ?? msg.newTuple;
        const [match, full] = this.match(plan, old, msg.oldKind === 'full' || plan.keyIndexes.length === 0);
        const immutable = new Set(plan.alwaysIdentity);
        for (const i of plan.alwaysIdentity) {
          if (match.includes(i) && msg.oldTuple && text(msg.oldTuple[i]) !== text(msg.newTuple[i])) {
            throw new PgferryError(ErrorCodes.APPLY, `target: column "${plan.columns[i]}" of ${tableKey(plan.table)} is GENERATED ALWAYS AS IDENTITY but its value changed on the source; ALTER it to GENERATED BY DEFAULT on the target`);
          }
        }
        const set = msg.newTuple.flatMap((v, i) => (v === UNCHANGED_TOAST || immutable.has(i) ? [] : [i]));
        const guard = plan.alwaysIdentity.filter((i) => !match.includes(i) && msg.newTuple[i] !== UNCHANGED_TOAST);
        const setOthers = set.filter((i) => !match.includes(i));
        if (!full && !msg.oldTuple && guard.length === 0 && setOthers.length > 0) {
          // Key unchanged: joins a set-based batch of updates to this table.
          await this.keyedChange('update', plan, setOthers, msg.newTuple);
          return;
        }
        await this.closeKeyed();
        // Nothing to assign (only unchanged TOAST and identity columns): still prove the row is there.
        const stmt = set.length > 0 ? updateStatement(plan, set, match, full, guard) : matchStatement(plan, match, full, guard);
        await this.exec(plan, stmt, msg.newTuple, old, 'update');
        return;
      }
      case 'delete': {
        const plan = await this.plan(msg.relationOid);
        const [match, full] = this.match(plan, msg.oldTuple, msg.oldKind === 'full' || plan.keyIndexes.length === 0);
        if (!full) {
          await this.keyedChange('delete', plan, [], msg.oldTuple);
          return;
        }
        await this.closeKeyed();
        await this.exec(plan, deleteStatement(plan, match, full), msg.oldTuple, msg.oldTuple, 'delete');
        return;
      }
      case 'truncate': {
        const plans: RelationPlan[] = [];
        for (const oid of msg.relationOids) plans.push(await this.plan(oid));
        // No CASCADE, like the native apply worker: the source already lists every table it cascaded to,
        // and cascading here could empty target tables pgferry does not migrate.
        await this.flushStatements();
        await this.client.query(truncateStatement(plans, msg.restartIdentity));
        for (const p of plans) this.count(p, 'truncate');
        return;
      }
    }
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
    if (!this.open) await this.begin();
    await this.flushInserts();
    await this.flushStatements();
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
        `SELECT a.attname AS name, format('%I.%I', n.nspname, ty.typname) AS type, a.atttypmod AS typmod
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
   * same target transaction (`synchronous_commit = on`: durable once this returns). Changes of an
   * unfinished source transaction must not be in the group: call it only between transactions.
   * Returns the committed position, or null when there was nothing to commit.
   */
  async commitGroup(): Promise<{ lsn: Lsn; transactions: number; counts: ChangeCounts } | null> {
    if (!this.open || this.group.endLsn === null) return null;
    await this.flushInserts();
    await this.flushStatements();
    await saveAppliedLsn(this.client, this.slot, this.group.endLsn);
    await this.client.query('COMMIT');
    this.open = false;
    return { lsn: this.group.endLsn, transactions: this.group.transactions, counts: this.counts };
  }

  /**
   * Ends the source transaction ending at `endLsn` and commits it at once (no grouping).
   * Returns what it applied, or null when it touched nothing pgferry replicates.
   */
  async commit(endLsn: Lsn): Promise<ChangeCounts | null> {
    if (!this.endTransaction(endLsn)) return null;
    return (await this.commitGroup())?.counts ?? null;
  }

  /** Rolls back an open transaction (after a failure; safe to call at any time). */
  async rollback(): Promise<void> {
    this.inserts = null;
    this.keyed = null;
    this.statements = [];
    this.statementBytes = 0;
    if (!this.open) return;
    this.open = false;
    await this.client.query('ROLLBACK');
  }

  /**
   * Sends the buffered consecutive inserts into one table: a few rows as INSERT statements in the
   * statement batch, more as one COPY in text format. Either way every row must land, or apply stops.
   */
  private async flushInserts(): Promise<void> {
    const batch = this.inserts;
    if (!batch) return;
    this.inserts = null;
    if (batch.tuples.length < COPY_MIN_ROWS) {
      for (const t of batch.tuples) await this.exec(batch.plan, insertStatement(batch.plan, batch.present), t, t, 'insert');
      return;
    }
    await this.flushStatements(); // they come first in source order
    const lines = batch.tuples.map((t) => copyTextLine(batch.present.map((i) => text(t[i]))));
    const stream = this.client.query(copyStreams.from(copyInStatement(batch.plan, batch.present)));
    await pipeline(Readable.from([lines.join("")]), stream); // one chunk: per-row writes cost more than the COPY itself
    if (stream.rowCount !== lines.length) {
      throw new PgferryError(ErrorCodes.APPLY, `target: COPY into ${tableKey(batch.plan.table)} stored ${stream.rowCount} of ${lines.length} rows`);
    }
    this.countsFor(batch.plan).insert += lines.length;
  }

  /** Adds one update or delete by key to the current run, starting a new run when it cannot join. */
  private async keyedChange(op: 'update' | 'delete', plan: RelationPlan, set: number[], tuple: TupleValue[]): Promise<void> {
    const key = plan.keyIndexes.map((i) => text(tuple[i]));
    const keyText = JSON.stringify(key);
    const run = this.keyed;
    if (run && (run.op !== op || run.plan !== plan || run.set.join() !== set.join() || run.keys.has(keyText))) await this.closeKeyed();
    const current = (this.keyed ??= { op, plan, set, rows: [], keys: new Set(), bytes: 0 });
    const row = [...key, ...set.map((i) => text(tuple[i]))];
    current.rows.push(row);
    current.keys.add(keyText);
    current.bytes += tupleBytes(row);
    if (current.rows.length >= KEYED_BATCH_ROWS || current.bytes >= BATCH_BYTES) await this.closeKeyed();
  }

  /** Moves the current run of keyed changes into the statement batch (in order). */
  private async closeKeyed(): Promise<void> {
    const run = this.keyed;
    if (!run) return;
    this.keyed = null;
    const sql = run.op === 'update' ? updateByKeysStatement(run.plan, run.set, run.rows) : deleteByKeysStatement(run.plan, run.rows);
    await this.queue({ sql, plan: run.plan, op: run.op, rows: run.rows.length, keys: [...run.keys] });
  }

  /** Sends the statement batch in one round trip and checks that each statement touched exactly its rows. */
  private async flushStatements(): Promise<void> {
    await this.closeKeyed();
    const batch = this.statements;
    if (batch.length === 0) return;
    this.statements = [];
    this.statementBytes = 0;
    const result = (await this.client.query(batch.map((s) => s.sql).join(';\n'))) as pg.QueryResult | pg.QueryResult[];
    const results = Array.isArray(result) ? result : [result];
    batch.forEach((s, i) => {
      const rows = results[i]?.rowCount ?? 0;
      if (rows !== s.rows) {
        const keys = s.keys.length > 0 ? ` (${s.keys.length === 1 ? 'key' : 'one of the keys'} ${s.keys.slice(0, 5).join(', ')}${s.keys.length > 5 ? ', ...' : ''})` : '';
        throw new PgferryError(
          ErrorCodes.APPLY,
          `target: ${s.op} on ${tableKey(s.plan.table)} matched ${rows} rows instead of ${s.rows}${keys}; the target has diverged from the source`,
        );
      }
      this.countsFor(s.plan)[s.op] += s.rows;
    });
  }

  private async queue(entry: { sql: string; plan: RelationPlan; op: 'insert' | 'update' | 'delete'; rows: number; keys: string[] }): Promise<void> {
    this.statements.push(entry);
    this.statementBytes += entry.sql.length;
    if (this.statements.length >= STATEMENT_BATCH || this.statementBytes >= BATCH_BYTES) await this.flushStatements();
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
    const key = tableKey(plan.table);
    let c = this.counts.get(key);
    if (!c) this.counts.set(key, (c = { insert: 0, update: 0, delete: 0, truncate: 0 }));
    return c;
  }
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
