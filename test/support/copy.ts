import pino from 'pino';
import { clientConfig } from '../../src/pg/connection.js';
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
  const reader = await connectSnapshotReader(clientConfig('source', db.sourceUrl));
  const exported = await createSlotWithSnapshot(clientConfig('source', db.sourceUrl), slot);
  const progress = new Map<string, TableProgress>();
  try {
    await opts.afterExport?.();
    await copyTables({
      source: reader,
      sourceConfig: clientConfig('source', db.sourceUrl),
      workers: opts.workers ?? 1,
      rangeBlocks: opts.rangeBlocks,
      target: clientConfig('target', db.targetUrl),
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
