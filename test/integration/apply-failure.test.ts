import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { captureLogger, confirmedFlush, currentWal, startInProcess, waitForIdentical } from '../support/pgferry.js';

describe('apply failures and an idle or unrelated source', () => {
  let db: TestDatabases;
  let app: App | undefined;
  const lines: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabases('failure');
    const ddl = `CREATE TABLE items (id int PRIMARY KEY, v text); CREATE TABLE other (id serial PRIMARY KEY, v text);`;
    await db.source.query(ddl);
    await db.target.query(ddl);
    await db.source.query(`INSERT INTO items SELECT g, 'v' FROM generate_series(1, 100) g`);
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, tables: 'items', slot: 'fail_slot', publication: 'fail_pub' }, { log: captureLogger(lines, 'info') });
    await waitFor(() => app!.status.phase === 'streaming' && app!.status.confirmedLsn !== null, 'streaming');
  });

  afterAll(async () => {
    await app?.stop();
    await db?.drop();
  });

  it('advances the slot while the source writes only to unpublished tables', async () => {
    for (let i = 0; i < 50; i++) await db.source.query(`INSERT INTO other (v) VALUES ('noise')`);
    const wal = await currentWal(db.source);
    await waitFor(async () => ((await confirmedFlush(db.source, 'fail_slot')) ?? 0n) >= wal, 'slot to confirm past unrelated writes');
    expect((await db.target.query(`SELECT count(*)::int AS n FROM other`)).rows[0].n).toBe(0);
  });

  it('stops on a target that diverged, confirms nothing past it, and resumes once fixed', async () => {
    await db.target.query(`ALTER TABLE items RENAME TO items_away`);
    await db.source.query(`UPDATE items SET v = 'changed' WHERE id <= 10`);
    const walAfterChange = await currentWal(db.source);
    await waitFor(() => app!.status.phase === 'failed', 'phase failed');
    expect(app!.status.lastError).toContain('public.items');
    const status = (await app!.http.inject({ method: 'GET', url: '/status' })).json();
    expect(status.phase).toBe('failed');
    // Keepalives keep arriving, yet the failed transaction is not confirmed. (Other test files
    // write to the same server: caught up before the UPDATE, the slot may confirm their WAL, up to
    // a position inside the UPDATE's transaction, never its end.)
    const confirmedDuring = await confirmedFlush(db.source, 'fail_slot');
    expect(confirmedDuring!).toBeLessThan(walAfterChange);

    await db.target.query(`ALTER TABLE items_away RENAME TO items`);
    await waitForIdentical(db.source, db.target, ['items']);
    await waitFor(() => app!.status.phase === 'streaming' && app!.status.lastError === null, 'back to streaming');
    await waitFor(async () => ((await confirmedFlush(db.source, 'fail_slot')) ?? 0n) >= walAfterChange, 'confirmed after recovery');
  });

  it('without --capture-ddl, stops on a column added on the source, naming table and column, and resumes once the target has it', async () => {
    await waitForIdentical(db.source, db.target, ['items']);
    await db.source.query(`ALTER TABLE items ADD COLUMN w numeric(6, 2) DEFAULT 1.25`);
    // The ALTER's own transaction has nothing to apply and may be confirmed; the transaction of the
    // rows after it must not be. A position inside it may (a keepalive's, while it was still being
    // written): the server resends every transaction that commits after the confirmed position.
    await db.source.query(`INSERT INTO items SELECT g, 'with w', g / 100.0 FROM generate_series(201, 210) g`);
    const afterRows = await currentWal(db.source);
    await db.source.query(`UPDATE items SET w = 9.75 WHERE id = 1`);
    const wal = await currentWal(db.source);
    await waitFor(() => app!.status.phase === 'failed', 'phase failed');
    const error = 'target: table public.items has no column "w" that the source sends; add it on the target (pgferry keeps the changes in the slot until then)';
    expect(app!.status.lastError).toBe(error);
    expect((await app!.http.inject({ method: 'GET', url: '/status' })).json().lastError).toBe(error);
    expect(lines.some((l) => l.includes('"level":"error"') && l.includes('no column \\"w\\"'))).toBe(true);
    expect(await confirmedFlush(db.source, 'fail_slot')).toBeLessThan(afterRows);
    expect((await db.target.query(`SELECT count(*)::int AS n FROM items WHERE id > 200`)).rows[0].n).toBe(0);

    await db.target.query(`ALTER TABLE items ADD COLUMN w numeric(6, 2) DEFAULT 1.25`);
    await waitForIdentical(db.source, db.target, ['items']);
    await waitFor(async () => ((await confirmedFlush(db.source, 'fail_slot')) ?? 0n) >= wal, 'confirmed after the target was altered');
    expect(app!.status.lastError).toBeNull();
  });

  it('without --capture-ddl, stops on a column type changed on the source instead of converting its values', async () => {
    await db.source.query(`ALTER TABLE items ALTER COLUMN w TYPE numeric(8, 4)`);
    await db.source.query(`UPDATE items SET w = 1.2345 WHERE id = 2`);
    const wal = await currentWal(db.source); // the update's commit ends at or before it
    await waitFor(() => app!.status.phase === 'failed', 'phase failed');
    expect(app!.status.lastError).toBe('target: column "w" of public.items is numeric(6,2) on the target but numeric(8,4) on the source; ALTER it on the target (pgferry keeps the changes in the slot until then)');
    expect(await confirmedFlush(db.source, 'fail_slot')).toBeLessThan(wal);
    expect((await db.target.query(`SELECT w::text FROM items WHERE id = 2`)).rows[0].w).toBe('1.25');

    await db.target.query(`ALTER TABLE items ALTER COLUMN w TYPE numeric(8, 4)`);
    await waitForIdentical(db.source, db.target, ['items']);
    await waitFor(async () => ((await confirmedFlush(db.source, 'fail_slot')) ?? 0n) >= wal, 'confirmed after the target was altered');
  });

  it('names the table when the target refuses a value (a data error names none)', async () => {
    await waitForIdentical(db.source, db.target, ['items']);
    await db.target.query(`CREATE UNIQUE INDEX items_v_only_here ON items (v) WHERE v LIKE 'dup%'`);
    await db.source.query(`INSERT INTO items (id, v) VALUES (301, 'dup')`);
    await db.source.query(`INSERT INTO items (id, v) VALUES (302, 'dup')`);
    await waitFor(() => app!.status.phase === 'failed', 'phase failed');
    expect(app!.status.lastError).toMatch(/^23505: duplicate key value violates unique constraint "items_v_only_here" \(table public\.items\)$/);
    await db.target.query(`DROP INDEX items_v_only_here`);
    await waitForIdentical(db.source, db.target, ['items']);
    await waitFor(() => app!.status.phase === 'streaming' && app!.status.lastError === null, 'back to streaming');
  });

  it('names the first keys of a batched update that matched fewer rows than the source changed', async () => {
    await waitForIdentical(db.source, db.target, ['items']);
    await db.target.query(`DELETE FROM items WHERE id = 13`);
    await db.source.query(`UPDATE items SET v = 'moved on' WHERE id BETWEEN 11 AND 20`);
    await waitFor(() => app!.status.phase === 'failed', 'phase failed');
    expect(app!.status.lastError).toMatch(/^target: update on public\.items matched 9 rows instead of 10 \(one of the keys (1\d|20), (1\d|20), (1\d|20), (1\d|20), (1\d|20), \.\.\.\); the target has diverged from the source$/);
    await db.target.query(`INSERT INTO items VALUES (13, 'put back')`);
    await waitForIdentical(db.source, db.target, ['items']);
    await waitFor(() => app!.status.phase === 'streaming' && app!.status.lastError === null, 'back to streaming');
  });

  it('reconnects when either connection is terminated, without losing or repeating a change', async () => {
    const { rows: [slot] } = await db.source.query(`SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'fail_slot'`);
    await db.source.query(`SELECT pg_terminate_backend($1)`, [slot.active_pid]);
    await db.source.query(`INSERT INTO items SELECT g, 'after source drop' FROM generate_series(1001, 1100) g`);
    await waitForIdentical(db.source, db.target, ['items']);
    await db.target.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgferry'`);
    await db.source.query(`UPDATE items SET v = 'after target drop' WHERE id > 1050`);
    await db.source.query(`DELETE FROM items WHERE id BETWEEN 1001 AND 1010`);
    await waitForIdentical(db.source, db.target, ['items']);
    await waitFor(async () => (await db.source.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'fail_slot' AND active`)).rowCount === 1, 'streaming again');
  });
});
