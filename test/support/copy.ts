import pino from 'pino';
import type pg from 'pg';
import { clientConfig, negotiateSsl } from '../../src/pg/connection.js';
import { createSlotWithSnapshot } from '../../src/source/slot.js';
import type { SourceTable } from '../../src/source/catalog.js';
import { connectSnapshotReader, copyTables, type TableProgress } from '../../src/snapshot/copy.js';
import type { TestDatabases } from './databases.js';

/**
 * Creates `slot` with an exported snapshot, runs `afterExport` (writes the copy must not see), then
 * copies `tables` under that snapshot, the way `Migration.prepare` does; returns the progress.
 */
export async function copyUnderNewSlot(
  db: TestDatabases,
  slot: string,
  tables: SourceTable[],
  opts: { afterExport?: () => Promise<void>; workers?: number; rangeBlocks?: number } = {},
): Promise<Map<string, TableProgress>> {
  const { source, target } = await configs(db);
  const reader = await connectSnapshotReader(source);
  const exported = await createSlotWithSnapshot(source, slot);
  const progress = new Map<string, TableProgress>();
  try {
    await opts.afterExport?.();
    await copyTables({
      source: reader,
      sourceConfig: source,
      workers: opts.workers ?? 1,
      rangeBlocks: opts.rangeBlocks,
      target,
      snapshotName: exported.snapshotName,
      snapshotLsn: exported.consistentPoint,
      tables,
      slot,
      progress,
      log: pino({ level: 'silent' }),
    });
  } finally {
    await exported.release();
  }
  return progress;
}

/** The test databases' connection settings as pgferry makes them (sslmode settled with the servers). */
export async function configs(db: TestDatabases): Promise<{ source: pg.ClientConfig; target: pg.ClientConfig }> {
  const [source, target] = [clientConfig('source', db.sourceUrl), clientConfig('target', db.targetUrl)];
  await negotiateSsl(source, target);
  return { source, target };
}
