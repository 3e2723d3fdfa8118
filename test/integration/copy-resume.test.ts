import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { exited, pace, startChild, waitForIdentical } from '../support/pgferry.js';

const BIG = ['big1', 'big2', 'big3', 'big4'];
const TABLES = [...BIG, 'small_a', 'small_b', 'ONLY par', 'chi'];

/** Application-like writes to every table, each in its own transaction, until stopped; a TRUNCATE of two tables now and then. */
function startWrites(url: string): { stop(): Promise<number> } {
  let running = true;
  let n = 0;
  const done: Promise<void> = (async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      while (running) {
        n++;
        await c.query('BEGIN');
        for (const t of BIG) {
          await c.query(`INSERT INTO ${t} VALUES ($1, 'new', 0)`, [1_000_000 + n]);
          await c.query(`UPDATE ${t} SET n = n + 1, v = 'upd' WHERE id = $1`, [(n * 7919) % 40_000 + 1]);
          await c.query(`DELETE FROM ${t} WHERE id = $1`, [(n * 104_729) % 40_000 + 1]);
        }
        await c.query(`INSERT INTO small_a VALUES ($1)`, [n]);
        await c.query(`INSERT INTO small_b VALUES ($1)`, [n]);
        await c.query(`UPDATE par SET v = v || '.' WHERE id = $1`, [(n % 100) + 1]);
        await c.query('COMMIT');
        if (n % 25 === 0) await c.query('TRUNCATE small_a, small_b');
        await pace(5);
      }
    } finally {
      await c.end();
    }
  })();
  done.catch(() => {}); // surfaced by stop()
  return {
    async stop() {
      running = false;
      await done;
      return n;
    },
  };
}

describe('kill -9 during the initial copy, then restart: copied tables are kept', () => {
  let db: TestDatabases;

  beforeAll(async () => {
    db = await createTestDatabases('copyresume');
    const ddl = `${BIG.map((t) => `CREATE TABLE ${t} (id int PRIMARY KEY, v text, n int);`).join('\n')}
      CREATE TABLE small_a (id int); CREATE TABLE small_b (id int);
      CREATE TABLE par (id int PRIMARY KEY, v text); CREATE TABLE chi (extra int) INHERITS (par); ALTER TABLE chi ADD PRIMARY KEY (id);`;
    await db.source.query(`${ddl} ALTER TABLE small_a REPLICA IDENTITY FULL; ALTER TABLE small_b REPLICA IDENTITY FULL;`);
    await db.target.query(ddl);
    for (const t of BIG) await db.source.query(`INSERT INTO ${t} SELECT g, repeat(md5(g::text), 4), g FROM generate_series(1, 150000) g`);
    await db.source.query(`INSERT INTO par SELECT g, 'p' FROM generate_series(1, 100) g; INSERT INTO chi SELECT g, 'c', g FROM generate_series(101, 200) g`);
  });

  afterAll(async () => {
    await db?.drop();
  });

  it('copies only the tables not copied before the kill, under a new snapshot, and streams to identical data', async () => {
    // The walsender's decoding memory at its minimum: a 20,000-row transaction is "large".
    const args = ['--source', `${db.sourceUrl}?options=${encodeURIComponent('-c logical_decoding_work_mem=64kB')}`, '--target', db.targetUrl, '--slot', db.slot, '--publication', `${db.name}_pub`, '--copy-workers', '1'];
    const writes = startWrites(db.sourceUrl);
    const copies = async (): Promise<{ table_name: string; state: string; copied_at: Date | null; snapshot_lsn: string | null; after_c: boolean | null }[]> =>
      (await db.target.query(`SELECT t.table_name, t.state, t.copied_at, t.snapshot_lsn::text, t.snapshot_lsn > m.consistent_point AS after_c
                                FROM pgferry.table_copy t JOIN pgferry.migration m USING (slot) WHERE slot = $1 ORDER BY 1`, [db.slot])).rows;
    let before: Awaited<ReturnType<typeof copies>> = [];
    try {
      const first = startChild(args);
      // One worker copies the largest tables one after the other: kill once some, not all, are copied.
      await waitFor(async () => {
        if (first.exitCode !== null) throw new Error(`pgferry exited: ${first.output()}`);
        before = await copies().catch(() => []);
        return before.some((t) => t.state === 'copied') && before.some((t) => t.state !== 'copied');
      }, 'some tables copied, others not', 120_000);
      first.kill('SIGKILL');
      expect(await exited(first), first.output()).toBe('SIGKILL');
      before = await copies();
      expect((await db.target.query(`SELECT phase FROM pgferry.migration WHERE slot = $1`, [db.slot])).rows[0].phase).toBe('snapshot');
      const keptBefore = before.filter((t) => t.state === 'copied');
      expect(keptBefore.length).toBeGreaterThan(0);

      const second = startChild(args);
      try {
        await waitFor(async () => (await db.target.query(`SELECT phase FROM pgferry.migration WHERE slot = $1`, [db.slot])).rows[0]?.phase === 'streaming', 'streaming after the resumed copy', 120_000);
        const n = await writes.stop();
        expect(n).toBeGreaterThan(0);
        await waitForIdentical(db.source, db.target, TABLES, 120_000);
        const after = await copies();
        expect(after.every((t) => t.state === 'copied')).toBe(true);
        for (const t of keptBefore) {
          // Not copied again: same mark, under the slot's own snapshot (its consistent point C).
          expect(after.find((a) => a.table_name === t.table_name), t.table_name).toEqual({ ...t, after_c: false });
        }
        // The others were copied under the resumed copy's snapshot, later than C.
        const redone = after.filter((a) => !keptBefore.some((t) => t.table_name === a.table_name));
        expect(redone.length).toBeGreaterThan(0);
        for (const t of redone) expect(t.after_c, t.table_name).toBe(true);
        // The temporary slot that exported that snapshot is gone; the migration's slot remains.
        const { rows: slots } = await db.source.query(`SELECT slot_name FROM pg_replication_slots WHERE database = $1`, [db.name]);
        expect(slots).toEqual([{ slot_name: db.slot }]);

        // Large transactions were taken whole while the resumed tables caught up (their changes need
        // commit positions); then pgferry reconnects to have them streamed again.
        await waitFor(
          async () => (await db.source.query(`SELECT 1 FROM pg_stat_activity WHERE backend_type = 'walsender' AND datname = $1 AND query LIKE '%streaming ''on''%'`, [db.name])).rowCount === 1,
          'a replication session streaming large transactions',
        );
        const streamed = async (): Promise<number> =>
          Number((await db.source.query<{ n: string }>(`SELECT stream_txns::text AS n FROM pg_stat_replication_slots WHERE slot_name = $1`, [db.slot])).rows[0]?.n ?? 0);
        const streamedBefore = await streamed();
        await db.source.query(`INSERT INTO small_a SELECT g FROM generate_series(1, 20000) g`);
        await waitForIdentical(db.source, db.target, TABLES, 120_000);
        await waitFor(async () => (await streamed()) > streamedBefore, 'the large transaction streamed');
      } finally {
        second.kill('SIGTERM');
        expect(await exited(second), second.output()).toBe(0);
      }
    } finally {
      await writes.stop();
    }
  });
});
