import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { clientConfig } from '../../src/pg/connection.js';
import { listSourceTables } from '../../src/source/catalog.js';
import { createSlotWithSnapshot } from '../../src/source/slot.js';
import { TableRewrittenError, connectSnapshotReader, copyTables, type TableProgress } from '../../src/snapshot/copy.js';
import { ensureStateSchema } from '../../src/apply/state-store.js';
import { createTestDatabases, type TestDatabases } from '../support/databases.js';

describe('initial copy under the exported snapshot', () => {
  let db: TestDatabases;

  beforeAll(async () => {
    db = await createTestDatabases('copy');
    const ddl = `CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, v text);`;
    await db.source.query(ddl);
    await db.target.query(ddl);
    await ensureStateSchema(db.target);
    await db.source.query(`INSERT INTO a SELECT g, 'a' FROM generate_series(1, 1000) g; INSERT INTO b SELECT g, 'b' FROM generate_series(1, 10) g`);
  });

  afterAll(async () => {
    await db?.drop();
  });

  const copy = async (slot: string, before: () => Promise<void>): Promise<Map<string, TableProgress>> => {
    const { tables } = await listSourceTables(db.source, []);
    const reader = await connectSnapshotReader(clientConfig('source', db.sourceUrl));
    const exported = await createSlotWithSnapshot(clientConfig('source', db.sourceUrl), slot);
    const progress = new Map<string, TableProgress>();
    try {
      await before();
      await copyTables({
        source: reader,
        target: clientConfig('target', db.targetUrl),
        snapshotName: exported.snapshotName,
        tables,
        slot,
        progress,
        log: pino({ level: 'silent' }),
      });
    } finally {
      await exported.release();
    }
    return progress;
  };

  it('sees the data as of the snapshot, not the writes after it', async () => {
    const progress = await copy('copy_snapshot', async () => {
      await db.source.query(`INSERT INTO a SELECT g, 'late' FROM generate_series(1001, 1500) g`);
    });
    expect(progress.get('public.a')).toMatchObject({ state: 'copied', rowsCopied: 1000 });
    expect((await db.target.query(`SELECT count(*)::int AS n FROM a`)).rows[0].n).toBe(1000);
    await db.target.query('TRUNCATE a, b');
  });

  it('refuses a table truncated after the snapshot was exported (TRUNCATE is not MVCC-safe)', async () => {
    const attempt = copy('copy_truncated', async () => {
      await db.source.query(`TRUNCATE b`);
    });
    await expect(attempt).rejects.toBeInstanceOf(TableRewrittenError);
    await expect(attempt).rejects.toThrow('public.b truncated or rewritten');
    expect((await db.target.query(`SELECT count(*)::int AS n FROM a`)).rows[0].n).toBe(0);
  });
});
