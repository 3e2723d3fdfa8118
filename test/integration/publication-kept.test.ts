import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedServer, type EmbeddedServer } from '../../src/embedded/server.js';
import { createTestDatabases, serverUrl, waitFor, type TestDatabases } from '../support/databases.js';
import { startInProcess } from '../support/pgferry.js';

/** A publication made beforehand is kept only when it publishes every change of exactly the migrated tables. */
describe('a publication that already exists', () => {
  let db: TestDatabases;
  const role = `pub_${Math.random().toString(36).slice(2, 8)}`;

  beforeAll(async () => {
    db = await createTestDatabases('pubkept');
    await db.source.query(`CREATE ROLE ${role} LOGIN REPLICATION; GRANT CREATE ON DATABASE ${db.name} TO ${role}`);
    await db.source.query(`CREATE TABLE t (id int PRIMARY KEY, v text); ALTER TABLE t OWNER TO ${role}; INSERT INTO t VALUES (1, 'a')`);
    // Made by a superuser, without truncate: pgferry's role cannot replace it.
    await db.source.query(`CREATE PUBLICATION ${db.name}_pub FOR TABLE ONLY public.t WITH (publish = 'insert, update, delete', publish_via_partition_root = true)`);
  });

  afterAll(async () => {
    await db?.drop();
    const admin = new pg.Client({ connectionString: serverUrl('source', 'postgres') });
    await admin.connect();
    await admin.query(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
    await admin.end();
  });

  it('that differs and belongs to another role is refused in one line before anything is written', async () => {
    const app = await startInProcess({ source: db.sourceUrl.replace('postgres@', `${role}@`), target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub`, tables: 't' });
    const err = await app.done.then(() => null, (e: unknown) => e as Error);
    await app.stop();
    expect(err?.message).toMatch(new RegExp(`^source: publication ${db.name}_pub exists but does not publish every operation \\(insert, update, delete, truncate\\), and role ${role} does not own it, so pgferry cannot replace it; have its owner drop it, or have a superuser`));
    expect((await db.target.query(`SELECT to_regclass('public.t') IS NULL AS absent`)).rows[0].absent).toBe(true);
  });

  describe('on a PostgreSQL 18 source', () => {
    let src: EmbeddedServer;
    let source: pg.Client;
    let target: pg.Client;
    const name = `pubfilter_${Math.random().toString(36).slice(2, 8)}`;

    beforeAll(async () => {
      src = await startEmbeddedServer(18);
      const admin = new pg.Client({ connectionString: src.url('postgres') });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${name}`);
      await admin.end();
      const tadmin = new pg.Client({ connectionString: serverUrl('target', 'postgres') });
      await tadmin.connect();
      await tadmin.query(`CREATE DATABASE ${name}`);
      await tadmin.end();
      source = new pg.Client({ connectionString: src.url(name) });
      target = new pg.Client({ connectionString: serverUrl('target', name) });
      await source.connect();
      await target.connect();
      await source.query(`CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 10) g; INSERT INTO t VALUES (150, 'old')`);
      await source.query(`CREATE PUBLICATION ${name}_pub FOR TABLE ONLY public.t WHERE (id < 100) WITH (publish = 'insert, update, delete, truncate', publish_via_partition_root = true)`);
    });

    afterAll(async () => {
      await source?.end().catch(() => {});
      await target?.end().catch(() => {});
      await src?.stop();
      const tadmin = new pg.Client({ connectionString: serverUrl('target', 'postgres') });
      await tadmin.connect();
      await tadmin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await tadmin.end();
    });

    it('with a row filter is replaced, so every change of the table streams', async () => {
      const app = await startInProcess({ source: src.url(name), target: serverUrl('target', name), slot: `${name}_slot`, publication: `${name}_pub`, tables: 't' });
      try {
        await waitFor(() => app.status.phase === 'streaming', 'streaming');
        await source.query(`INSERT INTO t VALUES (200, 'new')`);
        await source.query(`UPDATE t SET v = 'changed' WHERE id = 150`);
        await source.query(`INSERT INTO t VALUES (50, 'marker')`);
        await waitFor(async () => (await target.query(`SELECT 1 FROM t WHERE id = 50`)).rowCount === 1, 'the marker row');
        expect((await target.query(`SELECT id, v FROM t WHERE id >= 100 ORDER BY id`)).rows).toEqual([{ id: 150, v: 'changed' }, { id: 200, v: 'new' }]);
      } finally {
        await app.stop();
      }
    });
  });
});
