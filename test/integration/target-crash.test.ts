import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { startEmbeddedServer, type EmbeddedServer } from '../../src/embedded/server.js';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { randomMoment, startInProcess, waitForIdentical } from '../support/pgferry.js';

/**
 * The apply session commits asynchronously, so a target crash loses its last commits. Those
 * positions must not have been confirmed to the slot: the source sends them again.
 */
describe('the target crashes while pgferry applies (asynchronous commit)', () => {
  let db: TestDatabases;
  let target: EmbeddedServer;
  let targetClient: pg.Client | undefined;
  let app: App | undefined;

  beforeAll(async () => {
    db = await createTestDatabases('tcrash');
    // A target of its own: this test crashes it.
    target = await startEmbeddedServer(18, { settings: { fsync: 'off' }, quiet: true });
    const admin = new pg.Client({ connectionString: target.url('postgres') });
    await admin.connect();
    await admin.query('CREATE DATABASE crashme');
    await admin.end();
    const ddl = 'CREATE TABLE events (id int PRIMARY KEY, v text NOT NULL)';
    await db.source.query(ddl);
    const t = new pg.Client({ connectionString: target.url('crashme') });
    await t.connect();
    await t.query(ddl);
    await t.end();
  });

  afterAll(async () => {
    await app?.stop();
    await targetClient?.end().catch(() => {});
    await target?.stop();
    await db?.drop();
  });

  it('loses no transaction the target had not flushed: every row arrives exactly once', async () => {
    app = await startInProcess({ source: db.sourceUrl, target: target.url('crashme'), slot: db.slot, publication: `${db.name}_pub` });
    await waitFor(() => app!.status.phase === 'streaming', 'streaming');
    let running = true;
    let written = 0;
    const writer = (async () => {
      const c = new pg.Client({ connectionString: db.sourceUrl });
      await c.connect();
      while (running) await c.query(`INSERT INTO events VALUES (${++written}, 'event ${written}')`); // one transaction each
      await c.end();
    })();
    const count = async (): Promise<number> => {
      const c = new pg.Client({ connectionString: target.url('crashme') });
      await c.connect();
      try {
        return (await c.query<{ n: number }>('SELECT count(*)::int AS n FROM events')).rows[0]!.n;
      } finally {
        await c.end();
      }
    };
    let seed = 7;
    const random = (): number => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);
    try {
      for (let round = 0; round < 3; round++) {
        const before = await count();
        await waitFor(async () => (await count()) > before + 200, 'apply making progress');
        await randomMoment(random, 50, 400);
        await target.crash();
        await target.restart();
      }
    } finally {
      running = false;
      await writer;
    }
    targetClient = new pg.Client({ connectionString: target.url('crashme') });
    await targetClient.connect();
    const prints = await waitForIdentical(db.source, targetClient, ['events']);
    expect(prints['events']).toMatch(new RegExp(`^${written} rows`));
  });
});
