import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { FIXTURE_SCHEMA, FIXTURE_TABLES, SOURCE_EXTRAS, TARGET_EXTRAS, bigTransaction, seedFixture, startWriter } from '../support/fixture.js';
import { confirmedFlush, currentWal, startInProcess, waitForIdentical } from '../support/pgferry.js';

describe('live migration from PostgreSQL 14 to 18', () => {
  let db: TestDatabases;
  let app: App | undefined;

  beforeAll(async () => {
    db = await createTestDatabases('migrate');
    await db.source.query(FIXTURE_SCHEMA + SOURCE_EXTRAS);
    await db.target.query(FIXTURE_SCHEMA + TARGET_EXTRAS);
    await seedFixture(db.source, 3_000);
  });

  afterAll(async () => {
    await app?.stop();
    await db?.drop();
  });

  it('copies under the snapshot and streams every change, with writers busy throughout', async () => {
    const writer = startWriter(async () => {
      const c = new pg.Client({ connectionString: db.sourceUrl });
      await c.connect();
      return c;
    });
    try {
      app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot });
      const status = async (): Promise<Record<string, any>> => (await app!.http.inject({ method: 'GET', url: '/status' })).json();
      // Stops waiting at a failure (phase failed): the error is in the status.
      await waitFor(async () => ['streaming', 'failed'].includes((await status())['phase']), 'phase streaming').catch(async (err: Error) => {
        throw new Error(`${err.message}; status: ${JSON.stringify(await status())}`);
      });
      const reached = await status();
      expect(reached['phase'], `lastError: ${reached['lastError']}`).toBe('streaming');
      const copied = (await status())['tables'] as Record<string, { state: string; rowsCopied: number }>;
      expect(copied['public.kv']).toMatchObject({ state: 'copied' });
      expect(copied['public.kv']!.rowsCopied).toBeGreaterThanOrEqual(3_001);
      expect(copied['My Schema.Order Items']!.rowsCopied).toBeGreaterThanOrEqual(3_000);

      await bigTransaction(db.source, 1, 100_000); // one source transaction of 100,000 rows
      await waitFor(async () => Number((await status())['transactionsApplied']) > 20, 'streamed transactions');
    } finally {
      const written = await writer.stop();
      expect(written).toBeGreaterThan(20);
    }

    const prints = await waitForIdentical(db.source, db.target, FIXTURE_TABLES);
    expect(prints['bulk']).toMatch(/^100000 rows/);
    // The target trigger that sets small = -1 never fired during apply.
    expect((await db.target.query(`SELECT count(*)::int AS n FROM kv WHERE small = -1`)).rows[0].n).toBe(0);
    // Byte-exact values: microseconds, NaN, -0, json whitespace and duplicate keys.
    const row = (await db.target.query(`SELECT ts::text, tsx::text, n::text, f::text, j::text, iv::text FROM kv WHERE id = 0`)).rows[0];
    const src = (await db.source.query(`SELECT ts::text, tsx::text, n::text, f::text, j::text, iv::text FROM kv WHERE id = 0`)).rows[0];
    expect(row).toEqual(src);
    expect(row.j).toBe('{ "b" : 1,  "a":2, "a": 3 }');
    expect(row.n).toBe('NaN');

    // Caught up: the slot's confirmed position passes the source's WAL position after the last write
    // (other test files write to the same server, so the WAL keeps moving and lag is not exactly 0 here).
    const wal = await currentWal(db.source);
    await waitFor(async () => ((await confirmedFlush(db.source, db.slot)) ?? 0n) >= wal, 'slot confirmed past the last write');
    const s = (await app!.http.inject({ method: 'GET', url: '/status' })).json();
    expect(s.phase).toBe('streaming');
    expect(typeof s.lagBytes).toBe('number');
    const health = await app!.http.inject({ method: 'GET', url: '/healthz' });
    expect(health.statusCode).toBe(200);
  });
});
