import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { confirmedFlush, exited, startChild, waitForIdentical } from '../support/pgferry.js';

const ROWS = 30_000;

describe('SIGTERM and SIGINT', () => {
  let db: TestDatabases;

  beforeAll(async () => {
    db = await createTestDatabases('stop');
    const ddl = `CREATE TABLE items (id int PRIMARY KEY, v text)`;
    await db.source.query(ddl);
    await db.target.query(ddl);
    await db.source.query(`INSERT INTO items SELECT g, 'v' FROM generate_series(1, ${ROWS}) g`);
  });

  afterAll(async () => {
    await db?.drop();
  });

  /**
   * Holds a lock on the target table so that pgferry's apply of the next source transaction blocks
   * inside its target transaction: the transaction is in flight for as long as the test wants.
   */
  async function holdTargetTable(): Promise<{ release(): Promise<void> }> {
    const blocker = new pg.Client({ connectionString: db.targetUrl });
    blocker.on('error', () => {});
    await blocker.connect();
    await blocker.query(`BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE`);
    let released = false;
    return {
      async release() {
        if (released) return;
        released = true;
        await blocker.query('COMMIT');
        await blocker.end();
      },
    };
  }

  /**
   * Waits until streaming has begun: identical data alone is not enough, since after the copy the
   * post-data schema step (indexes) still runs and would be what a table lock blocks; so would the
   * ANALYZE run while streaming, which must be done too.
   */
  async function streaming(): Promise<void> {
    await waitForIdentical(db.source, db.target, ['items']);
    await waitFor(
      async () => (await db.target.query(`SELECT 1 FROM pgferry.migration WHERE slot = $1 AND phase = 'streaming'`, [db.slot]).catch(() => ({ rowCount: 0 }))).rowCount === 1,
      'streaming',
    );
    await waitFor(async () => (await db.source.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active`, [db.slot])).rowCount === 1, 'the slot in use');
    await waitFor(async () => (await db.target.query(`SELECT 1 FROM pg_stat_user_tables WHERE relname = 'items' AND analyze_count > 0`)).rowCount === 1, 'items analyzed');
  }

  /** Waits until pgferry's apply session is inside a target transaction, blocked by {@link holdTargetTable}. */
  async function applyInFlight(): Promise<void> {
    await waitFor(
      // The apply session's statement on items (schema copy's catalog reads, run at each start, wait behind the lock too).
      async () => (await db.target.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgferry' AND wait_event_type = 'Lock' AND query LIKE '%"public"."items"%'`)).rowCount! > 0,
      'a source transaction being applied',
    );
  }

  it('finishes, commits and confirms the transaction in flight, then exits 0', async () => {
    const child = startChild(['--source', db.sourceUrl, '--target', db.targetUrl, '--slot', db.slot, '--publication', 'stop_pub', '--log-level', 'info']);
    await streaming();
    const lock = await holdTargetTable();
    try {
      await db.source.query(`UPDATE items SET v = 'updated'`);
      await applyInFlight();
      child.kill('SIGTERM');
      await waitFor(() => child.output().includes('finishing the source transaction in flight first'), 'the stop to wait for the transaction').catch((err: Error) => {
        throw new Error(`${err.message}\n${child.output()}`);
      });
      expect(child.exitCode).toBeNull();
      await lock.release();
      expect(await exited(child), child.output()).toBe(0);
    } finally {
      child.kill('SIGKILL');
      await lock.release();
    }
    expect(child.output()).toContain('stopped between transactions');
    const { rows: [t] } = await db.target.query(`SELECT count(*) FILTER (WHERE v = 'updated')::int AS n FROM items`);
    expect(t.n).toBe(ROWS); // the transaction in flight was committed, not rolled back
    const { rows: [m] } = await db.target.query(`SELECT (applied_lsn - '0/0')::text AS lsn FROM pgferry.migration WHERE slot = $1`, [db.slot]);
    expect(await confirmedFlush(db.source, db.slot)).toBeGreaterThanOrEqual(BigInt(m.lsn));
  });

  it('a second signal exits at once, and the next start still resumes exactly', async () => {
    const args = ['--source', db.sourceUrl, '--target', db.targetUrl, '--slot', db.slot, '--publication', 'stop_pub'];
    const child = startChild(args);
    const lock = await holdTargetTable();
    try {
      await db.source.query(`UPDATE items SET v = 'again'`);
      await applyInFlight();
      child.kill('SIGINT');
      await waitFor(() => child.output().includes('stopping'), 'first signal acknowledged');
      child.kill('SIGINT');
      expect(await exited(child), child.output()).toBe(130);
    } finally {
      child.kill('SIGKILL');
      await lock.release();
    }
    const next = startChild(args);
    try {
      await waitForIdentical(db.source, db.target, ['items']);
    } finally {
      next.kill('SIGTERM');
      expect(await exited(next), next.output()).toBe(0);
    }
  });
});
