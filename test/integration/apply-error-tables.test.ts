import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabases, serverUrl, waitFor, type TestDatabases } from '../support/databases.js';
import { startInProcess } from '../support/pgferry.js';

/** The tables an apply error names are kept apart from its message: a name never turns a data error into a "lost connection". */
describe('a data error in a batch naming tables whose names read like a connection message', () => {
  let db: TestDatabases;

  beforeAll(async () => {
    db = await createTestDatabases('errtables');
    await db.source.query(`CREATE TABLE connections (id int PRIMARY KEY, v text); CREATE TABLE suspended_users (id int PRIMARY KEY, v text)`);
    await db.target.query(`CREATE TABLE connections (id int PRIMARY KEY, v varchar(3)); CREATE TABLE suspended_users (id int PRIMARY KEY, v text)`);
  });

  afterAll(async () => {
    await db?.drop();
  });

  it('fails (not a reconnect) and names both tables', async () => {
    const app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub`, schemaCopy: false });
    try {
      await waitFor(() => app.status.phase === 'streaming', 'streaming');
      await db.source.query(`BEGIN; INSERT INTO connections VALUES (1, 'too long'); INSERT INTO suspended_users VALUES (1, 'x'); COMMIT`);
      await waitFor(() => app.status.lastError !== null, 'the apply error');
      expect(app.status.lastError).toBe('22001: value too long for type character varying(3) (one of tables public.connections, public.suspended_users)');
      expect(app.status.phase).toBe('failed');
    } finally {
      await app.stop();
    }
  });
});

/** A SQL_ASCII source database can hold bytes that are not UTF-8: apply stops at such a value rather than storing U+FFFD. */
describe('a value that is not UTF-8, from a SQL_ASCII source', () => {
  let db: TestDatabases;
  let ascii: pg.Client;
  let name: string;

  beforeAll(async () => {
    db = await createTestDatabases('notutf8');
    name = `${db.name}_ascii`;
    await db.source.query(`CREATE DATABASE ${name} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
    ascii = new pg.Client({ connectionString: serverUrl('source', name) });
    await ascii.connect();
    await ascii.query(`CREATE TABLE notes (id int PRIMARY KEY, v text)`);
  });

  afterAll(async () => {
    await ascii?.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, [db.slot]).catch(() => {});
    await ascii?.end().catch(() => {});
    await db?.source.query(`DROP DATABASE IF EXISTS ${name}`);
    await db?.drop();
  });

  it('stops apply at the value (error 22021) and stores nothing in its place, nor anything after it', async () => {
    const app = await startInProcess({ source: serverUrl('source', name), target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub` });
    try {
      await waitFor(() => app.status.phase === 'streaming', 'streaming', 110_000);
      await ascii.query(`INSERT INTO notes VALUES (1, 'plain')`);
      await waitFor(async () => (await db.target.query(`SELECT 1 FROM notes WHERE id = 1`)).rowCount === 1, 'the plain row');
      // 0xE9 alone: Latin-1 'é', not UTF-8. Then a valid row, which must wait behind it.
      await ascii.query(`INSERT INTO notes VALUES (2, E'caf\\xe9')`);
      await ascii.query(`INSERT INTO notes VALUES (3, 'after')`);
      // The walsender refuses to send it as UTF-8 (the decoder would refuse it too: see its unit test).
      await waitFor(() => app.status.lastError?.includes('22021') === true, 'the apply error');
      expect(app.status.lastError).toContain('invalid byte sequence');
      const { rows } = await db.target.query<{ id: number }>(`SELECT id FROM notes ORDER BY id`);
      expect(rows.map((r) => r.id)).toEqual([1]);
    } finally {
      await app.stop();
    }
  });
});
