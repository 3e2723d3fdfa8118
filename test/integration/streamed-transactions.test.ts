import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { captureLogger, startInProcess, waitForIdentical } from '../support/pgferry.js';
import { rowCount } from '../support/compare.js';
import { alwaysParentCheck } from '../support/schema-fixture.js';
import { MAX_STREAMED } from '../../src/apply/streamed.js';

const TABLES = ['items', 'log'];

/**
 * Large source transactions are streamed by the server while they run (pgoutput protocol 2) and
 * applied as they arrive, each on a target session of its own, committed at their Stream Commit.
 * The walsender's decoding memory is set to its minimum through the source URL, so a few thousand
 * rows are "large".
 */
describe('large transactions applied while they run on the source', () => {
  let db: TestDatabases;
  let app: App | undefined;
  let writer: pg.Client;
  const lines: string[] = [];
  let sourceUrl: string;

  const start = async (): Promise<App> => {
    const started = await startInProcess({ source: sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub` }, { log: captureLogger(lines, 'warn') });
    await waitFor(() => started.status.phase === 'streaming', 'streaming', 110_000);
    return started;
  };
  /** Transactions the server has streamed for this slot so far. */
  const streamedCount = async (): Promise<number> =>
    Number((await db.source.query<{ n: string }>(`SELECT stream_txns::text AS n FROM pg_stat_replication_slots WHERE slot_name = $1`, [db.slot])).rows[0]?.n ?? 0);
  /** pgferry's target sessions inside an open transaction (a streamed transaction's session between blocks). */
  const openSessions = async (): Promise<number> =>
    (await db.target.query(`SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pgferry' AND state = 'idle in transaction'`, [db.name])).rowCount ?? 0;
  const marker = async (id: number): Promise<void> => {
    await db.source.query(`INSERT INTO log (id, note) VALUES ($1, 'marker')`, [id]);
    await waitFor(async () => (await db.target.query(`SELECT 1 FROM log WHERE id = $1`, [id])).rowCount === 1, `marker ${id} applied`);
  };

  beforeAll(async () => {
    db = await createTestDatabases('streamed');
    sourceUrl = `${db.sourceUrl}?options=${encodeURIComponent('-c logical_decoding_work_mem=64kB')}`;
    await db.source.query(`CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL DEFAULT 0);
      CREATE TABLE log (id int PRIMARY KEY, note text NOT NULL);`);
    writer = new pg.Client({ connectionString: db.sourceUrl });
    await writer.connect();
    app = await start();
  });

  afterAll(async () => {
    await writer?.end().catch(() => {});
    await app?.stop();
    await db?.drop();
  });

  it('applies a large transaction while it runs, with its subtransactions rolled back exactly, and small ones committed meanwhile first', async () => {
    const before = await streamedCount();
    await writer.query('BEGIN');
    await writer.query(`INSERT INTO items (id, v) SELECT g, md5(g::text) FROM generate_series(1, 3000) g`);
    // Rolled back: an update of rows the transaction inserted, and (nested) more inserts.
    await writer.query(`SAVEPOINT a; UPDATE items SET n = 1 WHERE id <= 2000; SAVEPOINT a2; INSERT INTO items (id, v) SELECT g, 'gone' FROM generate_series(3001, 4000) g; ROLLBACK TO SAVEPOINT a`);
    // Kept: a released subtransaction with a child rolled back inside it.
    await writer.query(`SAVEPOINT b; INSERT INTO items (id, v) SELECT g, 'kept' FROM generate_series(4001, 5000) g;
      SAVEPOINT b2; DELETE FROM items WHERE id <= 1000; ROLLBACK TO SAVEPOINT b2; UPDATE items SET n = 2 WHERE id > 4500; RELEASE SAVEPOINT b`);
    await waitFor(async () => (await streamedCount()) > before && (await openSessions()) > 0, 'the transaction streamed and open on the target');

    // Committed while it runs: applied at once on the main session, not behind the large one.
    await marker(1);
    expect(await rowCount(db.target, 'items')).toBe(0);
    expect(app!.status.largeTransactions.inProgress).toBe(1);
    expect(app!.status.largeTransactions.changes).toBeGreaterThan(0);

    await writer.query(`UPDATE items SET v = 'top' WHERE id % 7 = 0; DELETE FROM items WHERE id BETWEEN 2001 AND 2500`);
    await writer.query('COMMIT');
    await waitForIdentical(db.source, db.target, TABLES);
    expect(await rowCount(db.target, 'items')).toBe(3500);
    expect((await db.target.query(`SELECT 1 FROM items WHERE v = 'gone' OR n = 1`)).rowCount).toBe(0);
    expect(await openSessions()).toBe(0);
    expect(app!.status.largeTransactions).toEqual({ inProgress: 0, changes: 0 });
    expect(lines.filter((l) => l.includes('"level":50') || l.includes('applied whole'))).toEqual([]);
  });

  it('leaves no trace of a large transaction rolled back on the source', async () => {
    const before = await streamedCount();
    await writer.query('BEGIN');
    await writer.query(`INSERT INTO items (id, v) SELECT g, 'aborted' FROM generate_series(10001, 15000) g`);
    await writer.query(`UPDATE items SET n = 9 WHERE id <= 4000`);
    await waitFor(async () => (await streamedCount()) > before && (await openSessions()) > 0, 'the transaction streamed and open on the target');
    await writer.query('ROLLBACK');
    await waitFor(async () => (await openSessions()) === 0, 'its target session gone');
    await marker(2);
    await waitForIdentical(db.source, db.target, TABLES);
    expect((await db.target.query(`SELECT 1 FROM items WHERE v = 'aborted' OR n = 9`)).rowCount).toBe(0);
  });

  it('a large transaction running across a stop and restart is streamed again from its first change and applied once', async () => {
    const before = await streamedCount();
    await writer.query('BEGIN');
    await writer.query(`INSERT INTO items (id, v) SELECT g, 'across' FROM generate_series(20001, 25000) g`);
    await waitFor(async () => (await streamedCount()) > before && (await openSessions()) > 0, 'the transaction streamed and open on the target');
    await app!.stop();
    app = undefined;
    expect(await openSessions()).toBe(0);
    expect(await rowCount(db.target, 'items')).toBe(3500);
    app = await start();
    await writer.query(`INSERT INTO items (id, v) SELECT g, 'after restart' FROM generate_series(25001, 26000) g`);
    await writer.query('COMMIT');
    await waitForIdentical(db.source, db.target, TABLES);
    expect(await rowCount(db.target, 'items')).toBe(3500 + 6000);
  });

  it('a streamed transaction that fails on the target is applied again whole, after its commit, where a strict replay resolves it', async () => {
    // A trigger that fires during apply (ENABLE ALWAYS) and sees the per-table batching's order:
    // the streamed transaction's batched form trips it; whole, the strict replay does not.
    await db.source.query(`CREATE TABLE parents (id int PRIMARY KEY); CREATE TABLE children (id int PRIMARY KEY, parent int NOT NULL)`);
    await db.target.query(`CREATE TABLE parents (id int PRIMARY KEY); CREATE TABLE children (id int PRIMARY KEY, parent int NOT NULL); ${alwaysParentCheck('children', 'parent', 'parents')}`);
    await db.source.query(`ALTER PUBLICATION ${db.name}_pub ADD TABLE parents, children`);
    await db.source.query(`INSERT INTO parents VALUES (0)`);
    await waitFor(async () => (await db.target.query(`SELECT 1 FROM parents`)).rowCount === 1, 'parent 0 applied').catch((err: Error) => {
      throw new Error(`${err.message}\n${lines.join('\n')}`);
    });
    const before = await streamedCount();
    // Batched, the children run (opened first) is sent before parent 1 is inserted.
    await writer.query(`BEGIN; INSERT INTO children SELECT g, 0 FROM generate_series(0, 3000) g;
      INSERT INTO parents VALUES (1); INSERT INTO children VALUES (3001, 1); COMMIT`);
    await waitForIdentical(db.source, db.target, [...TABLES, 'parents', 'children']);
    expect(await streamedCount()).toBeGreaterThan(before);
    expect(lines.some((l) => l.includes('applied whole'))).toBe(true);
    expect(lines.some((l) => l.includes('one change at a time'))).toBe(true);
    expect(app!.status.phase).toBe('streaming');
  });

  it(`more than ${MAX_STREAMED} large transactions at once: the one past the limit makes pgferry take them whole, and all apply once`, async () => {
    await app!.stop();
    app = await start(); // streaming again (a new process's state)
    const writers: pg.Client[] = [];
    try {
      for (let w = 0; w <= MAX_STREAMED; w++) {
        const c = new pg.Client({ connectionString: db.sourceUrl });
        await c.connect();
        writers.push(c);
        await c.query('BEGIN');
        await c.query(`INSERT INTO items (id, v) SELECT g, 'writer ${w}' FROM generate_series(${100_000 + w * 10_000}, ${100_000 + w * 10_000 + 2999}) g`);
      }
      // The server streams the largest of them each time its decoding memory is full: in the end every one.
      for (let w = 0; w <= MAX_STREAMED; w++) await writers[w]!.query(`INSERT INTO items (id, v) SELECT g, 'more' FROM generate_series(${100_000 + w * 10_000 + 3000}, ${100_000 + w * 10_000 + 5999}) g`);
      await waitFor(() => lines.some((l) => l.includes(`more than ${MAX_STREAMED} large transactions`)), 'the limit reached');
      for (const c of writers) await c.query('COMMIT');
      await waitForIdentical(db.source, db.target, TABLES);
      expect(await openSessions()).toBe(0);
      expect(app.status.phase).toBe('streaming');
    } finally {
      for (const c of writers) await c.end().catch(() => {});
    }
  });
});
