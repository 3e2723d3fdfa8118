import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { captureLogger, startInProcess, waitForIdentical } from '../support/pgferry.js';
import { alwaysParentCheck } from '../support/schema-fixture.js';

/**
 * The applier sends one run per table within a group, so changes to different tables may reach the
 * target in another order than on the source. Triggers that fire during apply (ENABLE ALWAYS) can
 * see that; the group must then be replayed change by change, not reported as a divergence.
 */
describe('apply order across tables', () => {
  let db: TestDatabases;
  let app: App | undefined;
  const lines: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabases('order');
    const ddl = `CREATE TABLE customers (id int PRIMARY KEY); CREATE TABLE orders (id int PRIMARY KEY, customer int NOT NULL); CREATE TABLE scratch (id int PRIMARY KEY); CREATE TABLE skus (id int PRIMARY KEY, sku text NOT NULL UNIQUE, qty int NOT NULL DEFAULT 0); CREATE TABLE hot (id int PRIMARY KEY, n int NOT NULL, note text);`;
    await db.source.query(ddl);
    await db.target.query(ddl);
    // A hand-made foreign key that also fires during apply (session_replication_role = replica).
    await db.target.query(alwaysParentCheck('orders', 'customer', 'customers'));
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub`, schemaCopy: false }, { log: captureLogger(lines, 'warn') });
    await waitFor(() => app!.status.phase === 'streaming', 'streaming', 110_000); // slot creation waits for transactions running anywhere on the source
    // Streamed, not copied: the ALWAYS trigger also fires during the copy, where tables load in parallel.
    await db.source.query(`INSERT INTO customers VALUES (0); INSERT INTO orders VALUES (0, 0)`);
    await waitFor(async () => (await db.target.query('SELECT 1 FROM orders WHERE id = 0')).rowCount === 1, 'first order applied'); // the next group starts empty
  });

  afterAll(async () => {
    await app?.stop();
    await db?.drop();
  });

  it('replays a group one change at a time when its batched form trips a constraint, and ends identical', async () => {
    // Opens the orders run before the customer exists; batched, the second order is sent before customer 1.
    await db.source.query(`BEGIN; INSERT INTO orders VALUES (1, 0); INSERT INTO customers VALUES (1); INSERT INTO orders VALUES (2, 1); COMMIT`);
    await db.source.query(`INSERT INTO customers VALUES (2); INSERT INTO orders VALUES (3, 2)`);
    await waitForIdentical(db.source, db.target, ['customers', 'orders']);
    expect(lines.some((l) => l.includes('one change at a time'))).toBe(true);
    expect(app!.status.phase).toBe('streaming');
  });

  it('widens the replay when a later transaction of the same backlog trips too', async () => {
    // A backlog of two tripping transactions. In the first, a TRUNCATE sends everything before it,
    // so its failure surfaces before the second has begun; replayed strictly, the first then shares
    // a group with the second, batched, which trips as well.
    await app!.stop();
    app = undefined;
    await db.source.query(`BEGIN; INSERT INTO orders VALUES (10, 0); INSERT INTO customers VALUES (10); INSERT INTO orders VALUES (11, 10); TRUNCATE scratch; COMMIT`);
    await db.source.query(`BEGIN; INSERT INTO orders VALUES (20, 0); INSERT INTO customers VALUES (20); INSERT INTO orders VALUES (21, 20); COMMIT`);
    const before = lines.length;
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub`, schemaCopy: false }, { log: captureLogger(lines, 'warn') });
    await waitForIdentical(db.source, db.target, ['customers', 'orders']);
    expect(lines.slice(before).filter((l) => l.includes('one change at a time'))).toHaveLength(2);
    expect(app.status.phase).toBe('streaming');
  });

  it('sends a table\'s deletes and updates before its inserts: a unique value freed and claimed again in one group needs no replay', async () => {
    await db.source.query(`INSERT INTO skus VALUES (1, 'a'), (2, 'b')`);
    await waitForIdentical(db.source, db.target, ['skus']);
    await app!.stop();
    app = undefined;
    // One backlog, one group, one run per kind for skus: the insert run opens first and holds 3, 4
    // and 5 when the delete and the update join their own runs.
    await db.source.query(`INSERT INTO skus VALUES (3, 'c')`);
    await db.source.query(`DELETE FROM skus WHERE id = 1`);
    await db.source.query(`INSERT INTO skus VALUES (4, 'a')`);
    await db.source.query(`UPDATE skus SET sku = 'x', qty = 1 WHERE id = 2`);
    await db.source.query(`INSERT INTO skus VALUES (5, 'b')`);
    const before = lines.length;
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub`, schemaCopy: false }, { log: captureLogger(lines, 'warn') });
    await waitForIdentical(db.source, db.target, ['skus']);
    expect(lines.slice(before).filter((l) => l.includes('one change at a time'))).toEqual([]);
    expect((await db.target.query('SELECT id, sku, qty FROM skus ORDER BY id')).rows).toEqual([
      { id: 2, sku: 'x', qty: 1 },
      { id: 3, sku: 'c', qty: 0 },
      { id: 4, sku: 'a', qty: 0 },
      { id: 5, sku: 'b', qty: 0 },
    ]);
  });

  it('writes a row that many transactions of one group update once, and a row inserted and updated in one group as one insert', async () => {
    await db.source.query(`INSERT INTO hot VALUES (1, 0, NULL), (2, 0, NULL), (3, 0, NULL)`);
    await waitForIdentical(db.source, db.target, ['hot']);
    await app!.stop();
    app = undefined;
    const stats = async (): Promise<{ ins: number; upd: number }> =>
      (await db.target.query(`SELECT n_tup_ins::int AS ins, n_tup_upd::int AS upd FROM pg_stat_user_tables WHERE relid = 'hot'::regclass`)).rows[0];
    await waitFor(async () => (await stats()).ins === 3, 'target statistics of the first rows');
    // A backlog of 300 transactions: each updates one of three hot rows, inserts a row and updates it.
    for (let i = 0; i < 300; i++) {
      await db.source.query(`BEGIN; UPDATE hot SET n = n + 1, note = 'u${i}' WHERE id = ${(i % 3) + 1}; INSERT INTO hot VALUES (${1000 + i}, 0, 'new'); UPDATE hot SET n = ${i} WHERE id = ${1000 + i}; COMMIT`);
    }
    const before = await stats();
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub`, schemaCopy: false }, { log: captureLogger(lines, 'warn') });
    await waitForIdentical(db.source, db.target, ['hot']);
    // Every change counts as applied...
    expect(app.status.changesApplied).toBe(900);
    // ...but the target wrote each hot row once per group (a few groups at most) and inserted the new rows with their final values.
    await waitFor(async () => (await stats()).ins === before.ins + 300, 'target statistics of the backlog');
    expect((await stats()).upd - before.upd).toBeLessThanOrEqual(30);
  });

  it('applies a long run of inserts (one COPY) byte-exact: multi-byte characters, COPY delimiters and escapes, NULLs', async () => {
    // Three and four UTF-8 bytes per character outgrow the COPY buffer's first estimate.
    await db.source.query(
      `INSERT INTO hot SELECT 5000 + g, g, CASE WHEN g % 7 = 0 THEN NULL ELSE repeat('€𝄞ü', 400) || E'\\\\t\\t\\\\N\\n\\r\\\\' || g END FROM generate_series(1, 300) g`,
    );
    await waitForIdentical(db.source, db.target, ['hot']);
    const digest = 'SELECT md5(string_agg(id || coalesce(note, \'<null>\'), \',\' ORDER BY id)) AS d, count(*)::int AS n FROM hot WHERE id > 5000';
    const [source, target] = await Promise.all([db.source.query(digest), db.target.query(digest)]);
    expect(target.rows[0]).toEqual(source.rows[0]);
    expect(target.rows[0].n).toBe(300);
  });

  it('replays a group in source order when merged updates move a unique value between rows', async () => {
    await app!.stop();
    app = undefined;
    // skus holds 3 'c' and 4 'a'. Merged, id 3 goes c -> a and id 4 a -> c in one statement: a collision.
    await db.source.query(`UPDATE skus SET sku = 't' WHERE id = 3`);
    await db.source.query(`UPDATE skus SET sku = 'c' WHERE id = 4`);
    await db.source.query(`UPDATE skus SET sku = 'a' WHERE id = 3`);
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub`, schemaCopy: false }, { log: captureLogger(lines, 'warn') });
    await waitForIdentical(db.source, db.target, ['skus']);
    expect((await db.target.query('SELECT id, sku FROM skus WHERE id IN (3, 4) ORDER BY id')).rows).toEqual([{ id: 3, sku: 'a' }, { id: 4, sku: 'c' }]);
    expect(app.status.phase).toBe('streaming');
  });
});
