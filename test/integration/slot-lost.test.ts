import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { startEmbeddedServer, type EmbeddedServer } from '../../src/embedded/server.js';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { scrape, valueOf } from '../support/metrics.js';
import { captureLogger, startInProcess } from '../support/pgferry.js';

describe('a slot the source invalidates (wal_status = lost)', () => {
  let server: EmbeddedServer;
  let db: TestDatabases;
  let source: pg.Client;
  let app: App | undefined;

  beforeAll(async () => {
    // Its own source server: max_slot_wal_keep_size applies to every slot of a server.
    server = await startEmbeddedServer(14, { settings: { max_slot_wal_keep_size: '1MB', fsync: 'off' } });
    db = await createTestDatabases('lost'); // the target side of this pair is used
    const admin = new pg.Client({ connectionString: server.url('postgres') });
    await admin.connect();
    await admin.query(`CREATE DATABASE lostdb`);
    await admin.end();
    source = new pg.Client({ connectionString: server.url('lostdb') });
    await source.connect();
    await source.query(`CREATE TABLE items (id int PRIMARY KEY, v text); CREATE TABLE filler (v text)`);
    await db.target.query(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
  });

  afterAll(async () => {
    await app?.stop();
    await source?.end().catch(() => {});
    await db?.drop();
    await server?.stop();
  });

  it('stops pgferry with the explanation and the commands that recover', async () => {
    const lines: string[] = [];
    app = await startInProcess({ source: server.url('lostdb'), target: db.targetUrl, slot: 'lost_slot', tables: 'items' }, { log: captureLogger(lines) });
    await waitFor(() => app!.status.phase === 'streaming', 'streaming');
    // Apply fails, so nothing is confirmed and the slot holds its WAL...
    await db.target.query(`ALTER TABLE items RENAME TO items_away`);
    await source.query(`INSERT INTO items VALUES (1, 'stuck')`);
    await waitFor(() => app!.status.phase === 'failed', 'apply failed');
    // ...until the source removes more WAL than max_slot_wal_keep_size allows it to keep.
    await waitFor(async () => {
      await source.query(`INSERT INTO filler SELECT repeat('x', 100) FROM generate_series(1, 2000)`);
      await source.query(`SELECT pg_switch_wal()`);
      await source.query(`CHECKPOINT`);
      const { rows: [s] } = await source.query(`SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lost_slot'`);
      return s?.wal_status === 'lost';
    }, 'the slot to be invalidated');
    const failure = await app.done.then(() => null, (err: unknown) => err as Error);
    expect(failure?.message).toMatch(/^source: replication slot lost_slot was invalidated \(wal_status = lost/);
    expect(failure?.message).toContain('pgferry cleanup --slot lost_slot, then pgferry start');
    expect(app.status.phase).toBe('failed');
    expect(valueOf((await scrape(app)).samples, 'pgferry_errors_total', { kind: 'preflight' })).toBe(1);
    expect(lines.some((l) => l.includes('"level":"error"') && l.includes('wal_status = lost'))).toBe(true);
  });
});
