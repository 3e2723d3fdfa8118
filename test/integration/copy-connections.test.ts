import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabases, serverUrl, waitFor, type TestDatabases } from '../support/databases.js';
import { captureLogger, startInProcess, waitForIdentical } from '../support/pgferry.js';

/** A target that refuses more sessions than the copy wants (a role's CONNECTION LIMIT) gets fewer copy workers, not a failed copy. */
describe('copy with a target short of connections', () => {
  let db: TestDatabases;
  const tables = ['a', 'b', 'c', 'd', 'e', 'f'];
  const role = `cw_${Math.random().toString(36).slice(2, 8)}`;

  beforeAll(async () => {
    db = await createTestDatabases('copyconn');
    const ddl = tables.map((t) => `CREATE TABLE ${t} (id int PRIMARY KEY, v text);`).join('');
    await db.source.query(ddl + tables.map((t) => `INSERT INTO ${t} SELECT g, '${t} ' || g FROM generate_series(1, 2000) g;`).join(''));
    await db.target.query(ddl);
    await db.target.query(`CREATE ROLE ${role} LOGIN CONNECTION LIMIT 4; GRANT CREATE ON DATABASE ${db.name} TO ${role}; GRANT ALL ON ALL TABLES IN SCHEMA public TO ${role}; GRANT SET ON PARAMETER session_replication_role TO ${role}`);
  });

  afterAll(async () => {
    await db?.drop();
    const admin = new pg.Client({ connectionString: serverUrl('target', 'postgres') });
    await admin.connect();
    try {
      await admin.query(`REVOKE SET ON PARAMETER session_replication_role FROM ${role}; DROP ROLE IF EXISTS ${role}`);
    } finally {
      await admin.end();
    }
  });

  it('copies with the sessions it gets, warns, and ends identical', async () => {
    const lines: string[] = [];
    const app = await startInProcess(
      { source: db.sourceUrl, target: db.targetUrl.replace('postgres@', `${role}@`), slot: db.slot, publication: `${db.name}_pub`, schemaCopy: false, copyWorkers: '6' },
      { log: captureLogger(lines, 'warn') },
    );
    try {
      await waitFor(() => app.status.phase === 'streaming', 'streaming');
      const warning = lines.map((l) => JSON.parse(l) as { msg: string; workers?: number; wanted?: number }).find((l) => l.msg.startsWith('copy: a server refused more sessions'));
      expect(warning?.wanted).toBe(6);
      expect(warning?.workers).toBeGreaterThanOrEqual(1);
      expect(warning?.workers).toBeLessThan(6);
      await db.source.query(`INSERT INTO a VALUES (0, 'streamed')`);
      await waitForIdentical(db.source, db.target, tables);
    } finally {
      await app.stop();
    }
  });
});
