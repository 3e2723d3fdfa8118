import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { startInProcess } from '../support/pgferry.js';

describe('a source schema that changes around the initial copy', () => {
  let db: TestDatabases | undefined;
  afterEach(async () => {
    await db?.drop();
    db = undefined;
  });

  it('is refused with one line that says why and what to do, instead of advice that would lose copied rows', async () => {
    db = await createTestDatabases('reschema');
    const d = db;
    await d.source.query(`CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g`);
    const flags = { source: d.sourceUrl, target: d.targetUrl, slot: d.slot, publication: `${d.name}_pub` };
    const first = await startInProcess(flags);
    await waitFor(() => first.status.phase === 'streaming', 'the copy');
    await first.stop();
    // As if the copy had been interrupted after copying t (its row says copied), then the source changed.
    await d.target.query(`UPDATE pgferry.migration SET phase = 'snapshot' WHERE slot = $1`, [d.slot]);
    await d.source.query(`ALTER TABLE t ADD COLUMN w int`);
    const second = await startInProcess(flags);
    await expect(second.done).rejects.toThrow(/^source: the schema changed while the initial copy was interrupted \(target: table .*t.* differs from the source \(.*\)\); the copy cannot be resumed: drop the migrated tables on the target \(or recreate the target database\), run pgferry cleanup, then pgferry start$/);
    await second.stop();
  });

  it('a column added after the tables were listed but before the snapshot stops the copy with a remedy, instead of copying without it', async () => {
    db = await createTestDatabases('colrace');
    const d = db;
    await d.source.query(`CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g`);
    // A transaction holding an xid: the slot's snapshot waits for it, after the tables were listed.
    const blocker = new pg.Client({ connectionString: d.sourceUrl });
    await blocker.connect();
    await blocker.query('BEGIN; SELECT txid_current()');
    const app = await startInProcess({ source: d.sourceUrl, target: d.targetUrl, slot: d.slot, publication: `${d.name}_pub`, captureDdl: 'true' });
    try {
      await waitFor(
        // Its own walsender only: other test files share this server, and a slot they create
        // meanwhile waits for the same open transaction.
        async () =>
          (await d.source.query(`SELECT 1 FROM pg_stat_activity WHERE backend_type = 'walsender' AND datname = current_database() AND query LIKE 'CREATE_REPLICATION_SLOT%' AND wait_event_type = 'Lock'`)).rowCount === 1,
        'the slot waiting for the open transaction',
      );
      await d.source.query(`BEGIN; ALTER TABLE t ADD COLUMN w int; UPDATE t SET w = id; COMMIT`);
      await blocker.query('COMMIT');
      await expect(app.done).rejects.toThrow(/^source: the columns of public\.t changed while the copy started \(id, v -> id, v, w\); drop the migrated tables on the target \(or recreate the target database\), run pgferry cleanup, then pgferry start$/);
    } finally {
      await blocker.end();
      await app.stop();
    }
  });
});
