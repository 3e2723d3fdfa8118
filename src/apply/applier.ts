import type pg from 'pg';
import { PgferryError, ErrorCodes } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Lsn } from '../protocol/lsn.js';
import { UNCHANGED_TOAST, type PgoutputMessage, type TupleValue } from '../protocol/pgoutput.js';
import { qualified, tableKey, type TableName } from '../pg/connection.js';
import { deleteStatement, insertStatement, matchStatement, truncateStatement, updateStatement, type RelationPlan, type Statement } from './statements.js';
import { saveAppliedLsn } from './state-store.js';

type RelationMessage = Extract<PgoutputMessage, { tag: 'relation' }>;

/** Counts of what one transaction did, per table and operation. */
export type ChangeCounts = Map<string, { insert: number; update: number; delete: number; truncate: number }>;

/**
 * Applies decoded transactions to the target the way PostgreSQL's apply worker does: one target
 * transaction per source transaction, in commit order, with `session_replication_role = replica`
 * so target triggers and foreign keys do not fire again. The source commit's end LSN is written to
 * pgferry's state table inside the same target transaction, so data and progress commit together.
 *
 * Every change must touch exactly one row; anything else means the target diverged, and apply
 * stops with an error rather than silently skipping (the slot keeps the change for a retry).
 */
export class Applier {
  private readonly relations = new Map<number, RelationMessage>();
  private readonly plans = new Map<number, RelationPlan>();
  private readonly prepared = new Map<string, string>();
  private open = false;
  private counts: ChangeCounts = new Map();

  constructor(
    private readonly client: pg.Client,
    private readonly slot: string,
    private readonly log: Logger,
  ) {}

  /** Prepares the apply session; call once per connection. */
  async init(): Promise<void> {
    await this.client.query(`SET session_replication_role = replica`);
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
    const { rows } = await this.client.query<{ name: string; type: string; identity: string; generated: string; relkind: string }>(
      `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attidentity AS identity, a.attgenerated AS generated,
              (SELECT relkind FROM pg_class WHERE oid = a.attrelid) AS relkind
         FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
      [qualified(table)],
    );
    if (rows.length === 0) {
      throw new PgferryError(ErrorCodes.APPLY, `target: table ${tableKey(table)} does not exist; create it on the target (pgferry keeps the changes in the slot until then)`);
    }
    const types: string[] = [];
    for (const col of msg.columns) {
      const t = rows.find((r) => r.name === col.name);
      if (!t) throw new PgferryError(ErrorCodes.APPLY, `target: table ${tableKey(table)} has no column "${col.name}" that the source sends; add it on the target (pgferry keeps the changes in the slot until then)`);
      if (t.generated !== '') throw new PgferryError(ErrorCodes.APPLY, `target: column "${col.name}" of ${tableKey(table)} is generated on the target but not on the source; make it a plain column`);
      types.push(t.type);
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
      keyIndexes,
      alwaysIdentity: msg.columns.flatMap((c, i) => (rows.find((r) => r.name === c.name)?.identity === 'a' ? [i] : [])),
    };
  }

  /** Opens the target transaction for a source transaction. */
  async begin(): Promise<void> {
    await this.client.query('BEGIN');
    this.open = true;
    this.counts = new Map();
  }

  /** Applies one row change or truncate inside the open transaction. */
  async change(msg: Extract<PgoutputMessage, { tag: 'insert' | 'update' | 'delete' | 'truncate' }>): Promise<void> {
    if (!this.open) await this.begin();
    switch (msg.tag) {
      case 'insert': {
        const plan = await this.plan(msg.relationOid);
        const present = msg.newTuple.flatMap((v, i) => (v === UNCHANGED_TOAST ? [] : [i]));
        await this.exec(plan, insertStatement(plan, present), msg.newTuple, msg.newTuple, 'insert');
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
        // Nothing to assign (only unchanged TOAST and identity columns): still prove the row is there.
        const stmt = set.length > 0 ? updateStatement(plan, set, match, full, guard) : matchStatement(plan, match, full, guard);
        await this.exec(plan, stmt, msg.newTuple, old, 'update');
        return;
      }
      case 'delete': {
        const plan = await this.plan(msg.relationOid);
        const [match, full] = this.match(plan, msg.oldTuple, msg.oldKind === 'full' || plan.keyIndexes.length === 0);
        await this.exec(plan, deleteStatement(plan, match, full), msg.oldTuple, msg.oldTuple, 'delete');
        return;
      }
      case 'truncate': {
        const plans: RelationPlan[] = [];
        for (const oid of msg.relationOids) plans.push(await this.plan(oid));
        // No CASCADE, like the native apply worker: the source already lists every table it cascaded to,
        // and cascading here could empty target tables pgferry does not migrate.
        await this.client.query(truncateStatement(plans, msg.restartIdentity));
        for (const p of plans) this.count(p, 'truncate');
        return;
      }
    }
  }

  /**
   * Commits the source transaction ending at `endLsn`, with that LSN stored in the same target
   * transaction. Returns what it applied, or null when the source transaction touched nothing
   * pgferry replicates (no target transaction was opened).
   */
  async commit(endLsn: Lsn): Promise<ChangeCounts | null> {
    if (!this.open) return null;
    await saveAppliedLsn(this.client, this.slot, endLsn);
    await this.client.query('COMMIT');
    this.open = false;
    return this.counts;
  }

  /** Rolls back an open transaction (after a failure; safe to call at any time). */
  async rollback(): Promise<void> {
    if (!this.open) return;
    this.open = false;
    await this.client.query('ROLLBACK');
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

  private async exec(plan: RelationPlan, stmt: Statement, tuple: TupleValue[], old: TupleValue[], op: 'insert' | 'update' | 'delete'): Promise<void> {
    const values = stmt.params.map((p) => text(p >= 0 ? tuple[p] : old[-1 - p]));
    let name = this.prepared.get(stmt.sql);
    if (!name) {
      name = `pgferry_${this.prepared.size}`;
      this.prepared.set(stmt.sql, name);
    }
    const result = await this.client.query({ name, text: stmt.sql, values });
    if (result.rowCount !== 1) {
      const key = plan.keyIndexes.map((i) => `${plan.columns[i]}=${String(text(old[i]))}`).join(', ');
      throw new PgferryError(
        ErrorCodes.APPLY,
        `target: ${op} on ${tableKey(plan.table)} matched ${result.rowCount ?? 0} rows instead of 1${key ? ` (${key})` : ''}; the target has diverged from the source`,
      );
    }
    this.count(plan, op);
  }

  private count(plan: RelationPlan, op: 'insert' | 'update' | 'delete' | 'truncate'): void {
    const key = tableKey(plan.table);
    let c = this.counts.get(key);
    if (!c) this.counts.set(key, (c = { insert: 0, update: 0, delete: 0, truncate: 0 }));
    c[op]++;
  }
}

/** A tuple value as a text parameter. Binary values are never requested, so they cannot occur. */
function text(v: TupleValue | undefined): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v;
  throw new PgferryError(ErrorCodes.PROTOCOL, 'source: unexpected binary or unchanged-TOAST value where a value is required');
}
