import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { listSourceTables } from '../../src/source/catalog.js';
import { createSlotWithSnapshot } from '../../src/source/slot.js';
import { TableRewrittenError, connectSnapshotReader, copyTables, type TableProgress } from '../../src/snapshot/copy.js';
import { ensureStateSchema } from '../../src/apply/state-store.js';
import pg from 'pg';
import { configs, copyUnderNewSlot } from '../support/copy.js';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { captureLogger, startInProcess, waitForIdentical } from '../support/pgferry.js';
import type { App } from '../../src/app.js';

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

  const copy = async (slot: string, before: () => Promise<void>): Promise<Map<string, TableProgress>> =>
    copyUnderNewSlot(db, slot, (await listSourceTables(db.source, [])).tables, { afterExport: before });

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

  it('never queues a worker behind a TRUNCATE waiting for the first reader: that table goes to the first reader', async () => {
    await db.source.query(`CREATE TABLE big1 (id int PRIMARY KEY, v text); CREATE TABLE big2 (id int PRIMARY KEY, v text); CREATE TABLE small (id int PRIMARY KEY);
      INSERT INTO big1 SELECT g, repeat('x', 100) FROM generate_series(1, 1500000) g;
      INSERT INTO big2 SELECT g, repeat('y', 100) FROM generate_series(1, 300000) g;
      INSERT INTO small SELECT generate_series(1, 10)`);
    await db.target.query(`CREATE TABLE big1 (id int, v text); CREATE TABLE big2 (id int, v text); CREATE TABLE small (id int)`);
    const { tables } = await listSourceTables(db.source, ['big1', 'big2', 'small'].map((name) => ({ schema: 'public', name })));
    const { source, target } = await configs(db);
    const reader = await connectSnapshotReader(source);
    const exported = await createSlotWithSnapshot(source, 'copy_nowait');
    const progress = new Map<string, TableProgress>();
    const truncater = new pg.Client({ connectionString: db.sourceUrl });
    await truncater.connect();
    try {
      const copying = copyTables({
        source: reader,
        sourceConfig: source,
        workers: 2,
        target,
        snapshotName: exported.snapshotName,
        snapshotLsn: exported.consistentPoint,
        tables,
        rangeBlocks: 1_000_000_000, // whole tables, largest first: big1, big2, small
        slot: 'copy_nowait',
        progress,
        log: pino({ level: 'silent' }),
      });
      copying.catch(() => {});
      // Both readers busy with the big tables; then a TRUNCATE queues behind the first reader's lock on small.
      await waitFor(() => progress.get('public.big1')?.state === 'copying' && progress.get('public.big2')?.state === 'copying', 'both big tables copying', 30_000);
      const truncated = truncater.query('TRUNCATE small');
      truncated.catch(() => {});
      await waitFor(
        async () => (await db.source.query(`SELECT 1 FROM pg_locks WHERE database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND relation = 'small'::regclass AND mode = 'AccessExclusiveLock' AND NOT granted`)).rowCount === 1,
        'TRUNCATE waiting for its lock',
        10_000,
      );
      // The second reader finishes big2 and reaches small while the TRUNCATE waits: the case under test.
      expect(progress.get('public.big2')?.state).toBe('copying');
      await copying;
      await truncated;
      expect([...progress.values()].map((p) => p.state)).toEqual(['copied', 'copied', 'copied']);
      // The copy read small as of the snapshot, before the TRUNCATE (which the stream would replay).
      expect((await db.target.query(`SELECT count(*)::int AS n FROM small`)).rows[0].n).toBe(10);
      expect((await db.target.query(`SELECT count(*)::int AS n FROM big2`)).rows[0].n).toBe(300_000);
    } finally {
      await truncater.end();
      await exported.release();
    }
  });

  it('keeps starting the copy again while a table is truncated over and over, and copies once it stops', async () => {
    await db.source.query(`CREATE TABLE queue (id int PRIMARY KEY, v text); INSERT INTO queue SELECT g, 'q' FROM generate_series(1, 10) g`);
    await db.target.query(`CREATE TABLE queue (id int PRIMARY KEY, v text)`);
    // Holds an uncommitted TRUNCATE nearly all the time: every copy start loses the race to it.
    const truncater = new pg.Client({ connectionString: db.sourceUrl });
    await truncater.connect();
    let truncating = true;
    const truncations = (async () => {
      for (let n = 0; truncating; n++) {
        await truncater.query(`BEGIN; TRUNCATE queue; INSERT INTO queue SELECT g, 'q${n}' FROM generate_series(1, 10) g; SELECT pg_sleep(0.02); COMMIT`);
      }
    })();
    const lines: string[] = [];
    let app: App | undefined;
    try {
      app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, tables: 'a,queue', slot: 'copy_retry', publication: 'copy_retry_pub' }, { log: captureLogger(lines, 'warn') });
      const attempts = (): number => Math.max(0, ...lines.map((l) => JSON.parse(l) as { attempt?: number }).map((l) => l.attempt ?? 0));
      // More starts than the ten an earlier version allowed before giving up.
      await waitFor(() => attempts() >= 11, 'eleven copy starts lost to the TRUNCATE', 60_000);
      expect(lines.join('\n')).toContain('queue truncated or rewritten while the copy started');
      truncating = false;
      await truncations;
      await waitFor(() => app!.status.phase === 'streaming' || app!.status.phase === 'failed', 'the copy to start once the truncations stopped');
      expect(app.status.phase).toBe('streaming');
      await waitForIdentical(db.source, db.target, ['a', 'queue']);
    } finally {
      truncating = false;
      await truncations.catch(() => {});
      await truncater.end();
      await app?.stop();
    }
  });
});
