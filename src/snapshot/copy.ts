import pg from 'pg';
import { PgferryError, ErrorCodes, PreflightError, describeError } from '../errors.js';
import { ident, literal, qualified, tableKey } from '../pg/connection.js';
import type { Logger } from '../observability/logger.js';
import type { Lsn } from '../protocol/lsn.js';
import type { SourceTable } from '../source/catalog.js';
import { markUnitCopied } from '../apply/state-store.js';
import { binaryCopyTables } from './copy-format.js';
import { forwardCopy } from './copy-forward.js';
import { planCopyUnits, type CopiedRelation, type CopyUnit } from './plan.js';

/** Live progress of one table's copy. */
export interface TableProgress {
  state: 'pending' | 'copying' | 'copied';
  rowsCopied: number;
  bytesCopied: number;
}

/**
 * Connects the session that will read the snapshot. Call it before the slot is created, so the
 * snapshot can be imported and the tables locked as soon as it is exported: the window in which a
 * TRUNCATE can slip in between (see {@link TableRewrittenError}) stays a few round trips wide.
 */
export async function connectSnapshotReader(config: pg.ClientConfig): Promise<pg.Client> {
  const source = new pg.Client(config);
  source.on('error', () => {});
  await source.connect();
  return source;
}

/**
 * Copies each table from the source, read under the exported snapshot, into the target with
 * `COPY ... TO STDOUT` forwarded into `COPY ... FROM STDIN` ({@link forwardCopy}): values are never
 * parsed by pgferry, so they arrive byte for byte; in binary format where every column's type is portable between the
 * two servers ({@link binaryCopyTables}), in text otherwise. Tables are split into units ({@link planCopyUnits}:
 * leaf partitions, block ranges of large relations), several copied at once by `workers` reader
 * sessions that all import the same snapshot. Each unit's rows and its count in
 * `pgferry.table_copy` commit in one target transaction; the unit that completes a table marks it
 * copied in that transaction, so a table is marked copied exactly when all its units committed.
 * Target triggers and foreign keys are not fired (`session_replication_role`).
 * `source` comes from {@link connectSnapshotReader}; it is closed when the copy ends.
 */
export async function copyTables(opts: {
  source: pg.Client;
  /** For the extra readers; without it (or with `workers` 1) one session copies every table. */
  sourceConfig?: pg.ClientConfig;
  target: pg.ClientConfig;
  snapshotName: string;
  /** The consistent point of the snapshot, stored with each table copied under it. */
  snapshotLsn: Lsn;
  tables: SourceTable[];
  slot: string;
  progress: Map<string, TableProgress>;
  log: Logger;
  signal?: AbortSignal;
  /** Units copied at once, each pair of sessions under the same snapshot. */
  workers?: number;
  /** Blocks per range (tests); by default sized from the data and `workers`. */
  rangeBlocks?: number;
  /** Called once every table is locked under the snapshot (no rewrite can slip in any more), before any unit is read. */
  onLocked?: () => Promise<void>;
  /** Called once a table's last unit has committed, while the other tables are still copying. */
  onTableCopied?: (table: SourceTable) => void;
}): Promise<void> {
  const source = opts.source;
  const clients: pg.Client[] = [source];
  // Stopping mid-copy closes every connection: the units in flight roll back.
  const abort = (): void => {
    for (const c of clients) void c.end().catch(() => {});
  };
  opts.signal?.addEventListener('abort', abort, { once: true });
  const importSnapshot = async (c: pg.Client): Promise<void> => {
    await c.query(importSnapshotSql(opts.snapshotName));
  };
  try {
    // One round trip from the export to the locks: the window in which a TRUNCATE can slip in.
    // The first reader's locks cover every table until it commits, after the last worker is done.
    await lockAndCheck(source, opts.tables, opts.snapshotName).catch((err: unknown) => {
      // Chosen as a deadlock victim while locking (a concurrent TRUNCATE or DDL): try again with a new slot.
      if ((err as { code?: string }).code === '40P01') throw new TableRewrittenError([], 'deadlocked with a concurrent lock while the copy started');
      throw err;
    });
    await opts.onLocked?.();
    const wanted = opts.sourceConfig ? Math.max(1, opts.workers ?? 1) : 1;
    // Sized under the lock: no rewrite can change a relation's blocks from here on.
    const pending = planCopyUnits(await sizeRelations(source, opts.tables), wanted, opts.rangeBlocks);
    const units = new Map<string, TableUnits>();
    for (const u of pending) {
      const t = units.get(tableKey(u.table)) ?? { total: 0, left: 0, started: 0 };
      t.total++;
      t.left++;
      units.set(tableKey(u.table), t);
    }
    const connect = async (config: pg.ClientConfig): Promise<pg.Client> => {
      const c = new pg.Client(config);
      c.on('error', () => {});
      clients.push(c);
      await c.connect();
      return c;
    };
    const count = Math.max(1, Math.min(wanted, pending.length));
    const [extraTried, targetsTried] = await Promise.all([
      Promise.allSettled(Array.from({ length: count - 1 }, async () => {
        const reader = await connect(opts.sourceConfig!);
        await importSnapshot(reader);
        return reader;
      })),
      Promise.allSettled(Array.from({ length: count }, async () => {
        const target = await connect(opts.target);
        // A unit's commit need not wait for the disk: if lost in a crash, its count is lost with it, and
        // the durable commit that starts streaming flushes every commit before it.
        await target.query('SET session_replication_role = replica; SET synchronous_commit = off');
        return target;
      })),
    ]);
    // A server out of connections (53300: max_connections, or a role's or database's CONNECTION
    // LIMIT) gets fewer workers, not a failed copy; any other failure fails it. Sessions left
    // without a partner are closed with the others at the end.
    const failure = [...extraTried, ...targetsTried].flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    const tooMany = (err: unknown): boolean => (err as { code?: unknown } | null)?.code === '53300';
    if (failure.some((err) => !tooMany(err))) throw failure.find((err) => !tooMany(err));
    const extra = extraTried.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const targets = targetsTried.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    if (targets.length === 0) {
      throw new PgferryError(ErrorCodes.COPY, `target: no session left for the copy (${describeError(failure[0])}); lower --copy-workers, or raise the target's max_connections or the role's or database's CONNECTION LIMIT`);
    }
    const workers = Math.min(1 + extra.length, targets.length);
    if (workers < count) {
      opts.log.warn({ workers, wanted: count, err: describeError(failure[0]) }, 'copy: a server refused more sessions; copying with fewer workers (lower --copy-workers, or raise max_connections or the CONNECTION LIMIT)');
    }
    extra.length = workers - 1;
    targets.length = workers;
    const readers = [source, ...extra];
    const binary = await binaryCopyTables(source, targets[0]!, opts.tables);
    // Units a worker could not lock without queueing behind a waiting TRUNCATE or DDL: only the
    // first reader (which already holds every lock) can copy them.
    const holderOnly: CopyUnit[] = [];
    let othersRunning = readers.length - 1;
    let wakeHolder: () => void = () => {};
    let failed = false;
    const copyWith = async (reader: pg.Client, target: pg.Client, first: boolean): Promise<void> => {
      const locked = new Set<number>();
      for (;;) {
        if (failed) return;
        if (opts.signal?.aborted) throw new PgferryError(ErrorCodes.COPY, 'copy stopped');
        const unit = (first ? holderOnly.shift() : undefined) ?? pending.shift();
        if (!unit) {
          if (!first || othersRunning === 0) return;
          await new Promise<void>((resolve) => (wakeHolder = resolve));
          continue;
        }
        if (!first && !locked.has(unit.table.oid)) {
          if (!(await lockWithoutQueueing(reader, unit.table))) {
            holderOnly.push(unit);
            wakeHolder();
            continue;
          }
          locked.add(unit.table.oid);
        }
        try {
          await copyUnit(reader, target, unit, binary.has(unit.table.oid), units.get(tableKey(unit.table))!, opts);
        } catch (err) {
          if (!failed) {
            failed = true;
            wakeHolder();
            abort(); // the other workers stop too; their rollbacks are the connections closing
          }
          throw err;
        }
      }
    };
    await Promise.all(
      readers.map((reader, i) =>
        copyWith(reader, targets[i]!, i === 0).finally(() => {
          if (i === 0) return;
          othersRunning--;
          wakeHolder();
        }),
      ),
    );
    for (const reader of readers) await reader.query('COMMIT');
  } finally {
    opts.signal?.removeEventListener('abort', abort);
    for (const c of clients) await c.end().catch(() => {});
  }
}

/**
 * The heap relations the copy reads, sized in blocks: each ordinary table, and each leaf partition
 * of a partitioned table. A partitioned table with a leaf that is not an ordinary table (a foreign
 * table) or with no leaf at all is read through its root as one unit, as COPY would read it.
 */
async function sizeRelations(source: pg.Client, tables: SourceTable[]): Promise<CopiedRelation[]> {
  const { rows } = await source.query<{ table_oid: number; schema: string; name: string; relkind: string; blocks: string }>(
    `SELECT t.oid::int8::int AS table_oid, n.nspname AS schema, c.relname AS name, c.relkind,
            pg_relation_size(c.oid) / current_setting('block_size')::int AS blocks
       FROM unnest($1::oid[]) AS t(oid)
       LEFT JOIN LATERAL (SELECT relid FROM pg_partition_tree(t.oid) WHERE isleaf) AS p ON true
       JOIN pg_class c ON c.oid = coalesce(p.relid, t.oid)
       JOIN pg_namespace n ON n.oid = c.relnamespace`,
    [tables.map((t) => t.oid)],
  );
  return tables.flatMap((table): CopiedRelation[] => {
    const mine = rows.filter((r) => Number(r.table_oid) === table.oid);
    const blocks = mine.reduce((sum, r) => sum + Number(r.blocks), 0);
    if (mine.length === 0 || mine.some((r) => r.relkind !== 'r')) return [{ table, leaf: null, blocks }];
    return mine.map((r) => ({ table, leaf: { schema: r.schema, name: r.name }, blocks: Number(r.blocks) }));
  });
}

/**
 * TRUNCATE and table rewrites are not MVCC-safe: one committed after the snapshot was exported
 * makes the table look empty (or rewritten) to the snapshot, while the stream still replays the
 * changes made before it. So the session imports the snapshot and locks every table (ACCESS
 * SHARE, as pg_dump does) in the same round trip, before anything is read, and a table whose
 * storage changed between the export and the lock fails the copy with a retryable
 * {@link TableRewrittenError}: the caller starts over with a new slot.
 */
async function lockAndCheck(source: pg.Client, tables: SourceTable[], snapshotName: string): Promise<void> {
  await source.query(`${importSnapshotSql(snapshotName)}; LOCK TABLE ${tables.map(qualified).join(', ')} IN ACCESS SHARE MODE`);
  const { rows } = await source.query<{ name: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid IN (SELECT t.oid FROM unnest($1::oid[]) AS t(oid)
                      UNION SELECT p.relid FROM unnest($1::oid[]) AS t(oid), pg_partition_tree(t.oid) AS p)
        AND c.relkind = 'r' AND c.relfilenode <> pg_relation_filenode(c.oid)`,
    [tables.map((t) => t.oid)],
  );
  if (rows.length > 0) throw new TableRewrittenError(rows.map((r) => r.name));
  // Columns added, dropped or renamed after the tables were listed (and the target's made from
  // that list), before the export: the copy would leave them out, and with captured DDL the
  // stream would add them on the target empty, skipping the changes the snapshot already holds.
  const { rows: shapes } = await source.query<{ oid: number; columns: string[] }>(
    `SELECT c.oid::int8::int AS oid,
            ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum) AS columns
       FROM pg_class c WHERE c.oid = ANY($1::oid[])`,
    [tables.map((t) => t.oid)],
  );
  const now = new Map(shapes.map((r) => [Number(r.oid), r.columns]));
  const changed = tables.filter((t) => (now.get(t.oid) ?? []).join('\0') !== t.columns.join('\0'));
  if (changed.length > 0) {
    const t = changed[0]!;
    throw new PreflightError(
      `source: the columns of ${tableKey(t)}${changed.length > 1 ? ` (and ${changed.length - 1} more table(s))` : ''} changed while the copy started (${t.columns.join(', ')} -> ${(now.get(t.oid) ?? []).join(', ')}); drop the migrated tables on the target (or recreate the target database), run pgferry cleanup, then pgferry start`,
    );
  }
}

/** Begins a read-only transaction under the exported snapshot (one simple-protocol query). */
function importSnapshotSql(snapshotName: string): string {
  return `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT ${literal(snapshotName)}`;
}

/**
 * Locks `table` (ACCESS SHARE) in a worker's session unless that would queue. A worker must never
 * wait for a lock: a TRUNCATE or DDL waiting behind the first reader's lock is ahead of it in the
 * queue, and the first reader commits only after every worker is done, a deadlock PostgreSQL
 * cannot see (pg_dump's parallel workers lock with NOWAIT for the same reason). The savepoint
 * keeps the snapshot's transaction usable after a refusal.
 */
async function lockWithoutQueueing(reader: pg.Client, table: SourceTable): Promise<boolean> {
  await reader.query('SAVEPOINT pgferry_lock');
  try {
    await reader.query(`LOCK TABLE ${qualified(table)} IN ACCESS SHARE MODE NOWAIT`);
    await reader.query('RELEASE SAVEPOINT pgferry_lock');
    return true;
  } catch (err) {
    if ((err as { code?: string }).code !== '55P03') throw err;
    await reader.query('ROLLBACK TO SAVEPOINT pgferry_lock');
    return false;
  }
}

/** A table was truncated or rewritten on the source while the copy was starting. */
export class TableRewrittenError extends PgferryError {
  constructor(
    readonly tables: string[],
    why = `${tables.join(', ')} truncated or rewritten while the copy started`,
  ) {
    super(ErrorCodes.COPY, `source: ${why}; starting the copy again`, { retryable: true });
  }
}

/** A table's units: how many, how many not yet committed, when the first began. */
interface TableUnits {
  total: number;
  left: number;
  started: number;
}

/** Copies one unit in one target transaction; the transaction that completes its table marks the table copied. */
async function copyUnit(
  source: pg.Client,
  target: pg.Client,
  unit: CopyUnit,
  binary: boolean,
  units: TableUnits,
  opts: { slot: string; snapshotLsn: Lsn; progress: Map<string, TableProgress>; log: Logger; onTableCopied?: (table: SourceTable) => void },
): Promise<void> {
  const { table } = unit;
  const key = tableKey(table);
  const progress = opts.progress.get(key) ?? { state: 'pending', rowsCopied: 0, bytesCopied: 0 };
  opts.progress.set(key, progress);
  const started = Date.now();
  if (progress.state === 'pending') units.started = started;
  progress.state = 'copying';
  let rows = 0;
  let bytes = 0;
  await target.query('BEGIN');
  try {
    const format = binary ? ' (FORMAT binary)' : '';
    const copyIn = `COPY ${qualified(table)} (${table.columns.map(ident).join(', ')}) FROM STDIN${format}`;
    // Live progress counts CopyData messages (one per row; binary adds a trailer), corrected to
    // the exact count the servers report once the unit is done.
    let seen = 0;
    rows = await forwardCopy(source, target, unit.copyOut + format, copyIn, (messages, n) => {
      const data = n - 5 * messages; // without each message's type and length
      seen += messages;
      bytes += data;
      progress.rowsCopied += messages;
      progress.bytesCopied += data;
    });
    progress.rowsCopied += rows - seen;
    await markUnitCopied(target, opts.slot, table, rows, units.total, opts.snapshotLsn);
    await target.query('COMMIT');
  } catch (err) {
    await target.query('ROLLBACK').catch(() => {});
    throw new PgferryError(ErrorCodes.COPY, `copy of ${unit.label} failed: ${describeError(err)}`, { cause: err, retryable: true });
  }
  opts.log.debug({ unit: unit.label, rows, bytes, ms: Date.now() - started }, 'copy unit done');
  if (--units.left > 0) return;
  progress.state = 'copied';
  opts.log.info({ table: key, rows: progress.rowsCopied, bytes: progress.bytesCopied, units: units.total, ms: Date.now() - units.started }, 'table copied');
  opts.onTableCopied?.(table);
}
