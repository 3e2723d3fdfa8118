import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { captureLogger, startInProcess, waitForIdentical } from '../support/pgferry.js';

/** "Every table" (no --tables) is every table of the migration: a table created later is named, not a reason to refuse. */
describe('a source table created after the start, without --capture-ddl', () => {
  let db: TestDatabases;

  beforeAll(async () => {
    db = await createTestDatabases('newtables');
    await db.source.query(`CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one')`);
  });

  afterAll(async () => {
    await db?.drop();
  });

  it('is named once at the next start, and the migration resumes without it', async () => {
    const settings = { source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub` };
    const first = await startInProcess(settings);
    try {
      await waitFor(() => first.status.phase === 'streaming', 'streaming');
    } finally {
      await first.stop();
    }
    await db.source.query(`CREATE TABLE newt (id int PRIMARY KEY); INSERT INTO newt VALUES (1); INSERT INTO t VALUES (2, 'two')`);
    const lines: string[] = [];
    const again = await startInProcess(settings, { log: captureLogger(lines, 'warn') });
    try {
      await waitFor(() => again.status.phase === 'streaming' && again.status.lastError === null, 'streaming again');
      await waitForIdentical(db.source, db.target, ['t']);
      const warnings = lines.filter((l) => l.includes('after the migration started and is not migrated'));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain('source: table public.newt was created (or detached from a partitioned table) after the migration started and is not migrated');
      expect((await db.target.query(`SELECT to_regclass('public.newt') IS NULL AS absent`)).rows[0].absent).toBe(true);
    } finally {
      await again.stop();
    }
  });
});
