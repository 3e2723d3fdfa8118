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

describe('kill -9 at any moment, then restart', () => {
  let db: TestDatabases;

  beforeAll(async () => {
    db = await createTestDatabases('crash');
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
    const args = ['--source', db.sourceUrl, '--target', db.targetUrl, '--slot', 'crash_slot', '--publication', 'crash_pub'];
    const writer = startWriter(async () => {
      const c = new pg.Client({ connectionString: db.sourceUrl });
      await c.connect();
      return c;
    });
    const bulkWriter = new pg.Client({ connectionString: db.sourceUrl });
    await bulkWriter.connect();
    let bulkFrom = 1;
    try {
      // First kill lands during the initial copy (the seeded kv table takes a while to copy).
      for (let round = 0; round < 6; round++) {
        const child = startChild(args);
        if (round === 0) {
          await waitFor(async () => (await db.target.query(`SELECT 1 FROM pgferry.migration WHERE slot = 'crash_slot'`).catch(() => ({ rowCount: 0 }))).rowCount === 1, 'copy started');
        } else {
          if (round % 2 === 1) await bigTransaction(bulkWriter, bulkFrom, 100_000).then(() => (bulkFrom += 100_000));
          await randomMoment(random, 300, 2_800);
        }
        const before = await confirmedFlush(db.source, 'crash_slot');
        child.kill('SIGKILL');
        expect(await exited(child), child.output()).toBe('SIGKILL');
        const after = await confirmedFlush(db.source, 'crash_slot');
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
      const { rows: [m] } = await db.target.query(`SELECT phase FROM pgferry.migration WHERE slot = 'crash_slot'`);
      expect(m.phase).toBe('streaming');
    } finally {
      final.kill('SIGTERM');
      expect(await exited(final), `seed ${seed}\n${final.output()}`).toBe(0);
    }
  });
});
