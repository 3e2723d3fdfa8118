import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
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
