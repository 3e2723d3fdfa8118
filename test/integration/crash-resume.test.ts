import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { FIXTURE_SCHEMA, FIXTURE_TABLES, SOURCE_EXTRAS, TARGET_EXTRAS, bigTransaction, seedFixture, startWriter } from '../support/fixture.js';
import { confirmedFlush, exited, randomMoment, startChild, waitForIdentical } from '../support/pgferry.js';

/** Deterministic pseudo-random delays, so a failing run can be replayed with the same seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

// Streamed: the walsender's decoding memory at its minimum, so the 100,000-row transactions (and
// some of the writer's) reach pgferry in blocks while they run and are killed mid-way or mid-commit.
// Its first kill comes after the copy: after a resumed copy a session streams nothing until the
// resumed tables' snapshot is passed, and short rounds would never get there.
describe.each([
  { title: 'whole transactions', name: 'crash', options: '', sessions: '1' },
  { title: 'large transactions streamed while they run', name: 'crashs', options: `?options=${encodeURIComponent('-c logical_decoding_work_mem=64kB')}`, sessions: '1' },
  // Large groups spread over two target sessions (prepared shares, committed after the progress row).
  { title: 'large groups on two sessions', name: 'crashp', options: '', sessions: '2' },
])('kill -9 at any moment, then restart ($title)', ({ name, options, sessions }) => {
  let db: TestDatabases;

  beforeAll(async () => {
    db = await createTestDatabases(name);
    await db.source.query(FIXTURE_SCHEMA + SOURCE_EXTRAS);
    await db.target.query(FIXTURE_SCHEMA + TARGET_EXTRAS);
    await seedFixture(db.source, 4_000);
  });

  afterAll(async () => {
    await db?.drop();
  });

  it('loses nothing and applies nothing twice', async () => {
    const seed = Number(process.env['PGFERRY_TEST_SEED'] ?? 20261125);
    const random = rng(seed);
    const args = ['--source', db.sourceUrl + options, '--target', db.targetUrl, '--slot', db.slot, '--publication', 'crash_pub', '--apply-sessions', sessions];
    const writer = startWriter(async () => {
      const c = new pg.Client({ connectionString: db.sourceUrl });
      await c.connect();
      return c;
    });
    const bulkWriter = new pg.Client({ connectionString: db.sourceUrl });
    await bulkWriter.connect();
    let bulkFrom = 1;
    try {
      // Whole transactions: the first kill lands during the initial copy (the seeded kv table takes a while to copy).
      // Streamed: the first 100,000-row transaction is still open on the source across a kill.
      for (let round = 0; round < 6; round++) {
        const child = startChild(args);
        if (round === 2 && options) await bulkWriter.query('COMMIT');
        if (round === 0 && !options) {
          await waitFor(async () => (await db.target.query(`SELECT 1 FROM pgferry.migration WHERE slot = $1`, [db.slot]).catch(() => ({ rowCount: 0 }))).rowCount === 1, 'copy started');
        } else {
          if (round === 0) await waitFor(async () => (await db.target.query(`SELECT 1 FROM pgferry.migration WHERE slot = $1 AND phase = 'streaming'`, [db.slot]).catch(() => ({ rowCount: 0 }))).rowCount === 1, 'copy done', 110_000);
          if (round === 1 && options) await bulkWriter.query('BEGIN');
          if (round % 2 === 1) await bigTransaction(bulkWriter, bulkFrom, 100_000).then(() => (bulkFrom += 100_000));
          await randomMoment(random, 300, 2_800);
        }
        const before = await confirmedFlush(db.source, db.slot);
        child.kill('SIGKILL');
        expect(await exited(child), child.output()).toBe('SIGKILL');
        const after = await confirmedFlush(db.source, db.slot);
        if (before !== null && after !== null) expect(after).toBeGreaterThanOrEqual(before);
      }
    } finally {
      await writer.stop();
      await bulkWriter.end();
    }
    const final = startChild(args);
    try {
      const prints = await waitForIdentical(db.source, db.target, FIXTURE_TABLES, 180_000);
      expect(prints['bulk']).toMatch(new RegExp(`^${bulkFrom - 1} rows`));
      const { rows: [m] } = await db.target.query(`SELECT phase FROM pgferry.migration WHERE slot = $1`, [db.slot]);
      expect(m.phase).toBe('streaming');
      // No share of a spread group is left prepared (it would hold its rows' locks).
      const { rows: [p] } = await db.target.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_prepared_xacts WHERE database = current_database()`);
      expect(p!.n).toBe(0);
      const streamed = async (): Promise<number> =>
        Number((await db.source.query<{ n: string }>(`SELECT stream_txns::text AS n FROM pg_stat_replication_slots WHERE slot_name = $1`, [db.slot])).rows[0]?.n ?? 0);
      // Slot statistics reach the view through the statistics system a little later than the data.
      if (options) await waitFor(async () => (await streamed()) > 0, 'large transactions counted as streamed');
      else expect(await streamed()).toBe(0);
    } finally {
      final.kill('SIGTERM');
      expect(await exited(final), `seed ${seed}\n${final.output()}`).toBe(0);
    }
  });
});
