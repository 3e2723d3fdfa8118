import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { PgferryError, ErrorCodes, describeError } from '../errors.js';
import { ident, qualified, tableKey } from '../pg/connection.js';
import type { Logger } from '../observability/logger.js';
import type { SourceTable } from '../source/catalog.js';
import { markTableCopied } from '../apply/state-store.js';

/** Live progress of one table's copy. */
export interface TableProgress {
  state: 'pending' | 'copying' | 'copied';
  rowsCopied: number;
  bytesCopied: number;
}

/**
 * Copies each table from the source, read under the exported snapshot, into the target with
 * `COPY ... TO STDOUT` piped into `COPY ... FROM STDIN` in PostgreSQL's text format: values are
 * never parsed, so they arrive byte for byte. Each table's copy and its "copied" mark commit in one
 * target transaction. Target triggers and foreign keys are not fired (`session_replication_role`).
 */
export async function copyTables(opts: {
  source: pg.ClientConfig;
  target: pg.ClientConfig;
  snapshotName: string;
  tables: SourceTable[];
  slot: string;
  progress: Map<string, TableProgress>;
  log: Logger;
  signal?: AbortSignal;
}): Promise<void> {
  const source = new pg.Client(opts.source);
  const target = new pg.Client(opts.target);
  source.on('error', () => {});
  target.on('error', () => {});
  await source.connect();
  await target.connect();
  // Stopping mid-copy closes both connections: the table in flight rolls back, the next start redoes the copy.
  const abort = (): void => {
    void source.end().catch(() => {});
    void target.end().catch(() => {});
  };
  opts.signal?.addEventListener('abort', abort, { once: true });
  try {
    await source.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await source.query(`SET TRANSACTION SNAPSHOT '${opts.snapshotName.replace(/'/g, "''")}'`);
    await target.query('SET session_replication_role = replica');
    for (const table of opts.tables) {
      if (opts.signal?.aborted) throw new PgferryError(ErrorCodes.COPY, 'copy stopped');
      await copyTable(source, target, table, opts);
    }
    await source.query('COMMIT');
  } finally {
    opts.signal?.removeEventListener('abort', abort);
    await source.end().catch(() => {});
    await target.end().catch(() => {});
  }
}

async function copyTable(source: pg.Client, target: pg.Client, table: SourceTable, opts: { slot: string; progress: Map<string, TableProgress>; log: Logger }): Promise<void> {
  const key = tableKey(table);
  const progress = opts.progress.get(key) ?? { state: 'pending', rowsCopied: 0, bytesCopied: 0 };
  opts.progress.set(key, progress);
  progress.state = 'copying';
  const started = Date.now();
  const cols = table.columns.map(ident).join(', ');
  // COPY TO cannot read a partitioned table directly; a query over its root reads every partition.
  const from = table.relkind === 'p' ? `(SELECT ${cols} FROM ${qualified(table)})` : `${qualified(table)} (${cols})`;
  await target.query('BEGIN');
  try {
    const reader = source.query(copyStreams.to(`COPY ${from} TO STDOUT`));
    const writer = target.query(copyStreams.from(`COPY ${qualified(table)} (${cols}) FROM STDIN`));
    // In COPY's text format every row ends with a newline and newlines inside values are escaped.
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) progress.rowsCopied++;
        progress.bytesCopied += chunk.length;
        done(null, chunk);
      },
    });
    await pipeline(reader, counter, writer);
    await markTableCopied(target, opts.slot, table, progress.rowsCopied);
    await target.query('COMMIT');
  } catch (err) {
    await target.query('ROLLBACK').catch(() => {});
    throw new PgferryError(ErrorCodes.COPY, `copy of ${key} failed: ${describeError(err)}`, { cause: err, retryable: true });
  }
  progress.state = 'copied';
  opts.log.info({ table: key, rows: progress.rowsCopied, bytes: progress.bytesCopied, ms: Date.now() - started }, 'table copied');
}
