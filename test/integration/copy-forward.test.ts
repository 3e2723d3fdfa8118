import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forwardCopy } from '../../src/snapshot/copy-forward.js';
import { createTestDatabases, type TestDatabases } from '../support/databases.js';

/** COPY forwarded frame by frame from the source's connection to the target's, and what is left after a failure. */
describe('forwardCopy', () => {
  let db: TestDatabases;

  beforeAll(async () => {
    db = await createTestDatabases('copyforward');
    const ddl = `CREATE TABLE t (id int PRIMARY KEY, v text, b bytea);`;
    await db.source.query(`${ddl} INSERT INTO t SELECT g, repeat(md5(g::text), g % 40), decode(md5(g::text), 'hex') FROM generate_series(1, 20000) g`);
    await db.target.query(`${ddl} CREATE TABLE checked (id int CHECK (id <> 15000), v text, b bytea)`);
  });

  afterAll(async () => {
    await db?.drop();
  });

  const usable = async (): Promise<void> => {
    expect((await db.source.query('SELECT 1 AS one')).rows[0]).toEqual({ one: 1 });
    expect((await db.target.query('SELECT 1 AS one')).rows[0]).toEqual({ one: 1 });
  };
  const same = async (): Promise<boolean> => {
    const q = `SELECT md5(string_agg(t::text, ',' ORDER BY id)) AS h FROM t`;
    return (await db.source.query(q)).rows[0].h === (await db.target.query(q)).rows[0].h;
  };

  for (const format of ['', ' (FORMAT binary)']) {
    it(`copies every row unchanged${format} and leaves both sessions usable`, async () => {
      await db.target.query('TRUNCATE t');
      let messages = 0;
      const rows = await forwardCopy(db.source, db.target, `COPY t TO STDOUT${format}`, `COPY t FROM STDIN${format}`, (m) => (messages += m));
      expect(rows).toBe(20000);
      expect(messages).toBeGreaterThanOrEqual(20000);
      expect(await same()).toBe(true);
      await usable();
    });
  }

  it('fails with the target error when the target rejects a row midway; nothing stored, both sessions usable', async () => {
    await db.target.query('BEGIN');
    await expect(forwardCopy(db.source, db.target, 'COPY t TO STDOUT', 'COPY checked FROM STDIN', () => {})).rejects.toThrow(/violates check constraint/);
    await db.target.query('ROLLBACK');
    await usable();
    expect((await db.target.query('SELECT count(*)::int AS n FROM checked')).rows[0].n).toBe(0);
  });

  it('fails with the source error when the source fails midway; the target COPY is cancelled, both sessions usable', async () => {
    await db.target.query('TRUNCATE t');
    const failing = `COPY (SELECT id, v, b FROM t WHERE 1 / (15000 - id) IS NOT NULL) TO STDOUT`;
    let messages = 0;
    await expect(forwardCopy(db.source, db.target, failing, 'COPY t FROM STDIN', (m) => (messages += m))).rejects.toThrow(/division by zero/);
    expect(messages).toBeGreaterThan(0); // rows had reached the target before the failure
    await usable();
    expect((await db.target.query('SELECT count(*)::int AS n FROM t')).rows[0].n).toBe(0);
  });

  it('fails with the target error before any data when the target command is refused', async () => {
    await expect(forwardCopy(db.source, db.target, 'COPY t TO STDOUT', 'COPY missing FROM STDIN', () => {})).rejects.toThrow(/"missing" does not exist/);
    await usable();
  });
});
