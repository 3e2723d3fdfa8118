import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { SchemaError } from '../../src/errors.js';
import { createLogger } from '../../src/observability/logger.js';
import { copySchemaPhase, finishSchemaWhileStreaming } from '../../src/schema/copy-schema.js';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { captureLogger, startInProcess } from '../support/pgferry.js';
import { slowTable } from '../support/schema-fixture.js';

const log = createLogger('silent', { pretty: false });
const TABLES = [{ schema: 'public', name: 'parent' }, { schema: 'public', name: 'child' }];

/**
 * Schema copy's last step (foreign-key validation, ANALYZE) runs while streaming and again at each
 * start until it succeeds: it must report a foreign key the target's rows break, and do nothing
 * twice.
 */
describe('schema copy: the step run while streaming', () => {
  let db: TestDatabases;

  beforeAll(async () => {
    db = await createTestDatabases('finish');
    await db.source.query(`
      CREATE TABLE public.parent (id int PRIMARY KEY);
      CREATE TABLE public.child (id int PRIMARY KEY, parent int NOT NULL REFERENCES public.parent);
      INSERT INTO public.parent SELECT generate_series(1, 10);
      INSERT INTO public.child SELECT g, g FROM generate_series(1, 10) g;`);
  });

  afterAll(async () => {
    await db?.drop();
  });

  it('leaves validation and ANALYZE out of post-data, reports a foreign key the rows break, then validates and analyzes once', async () => {
    const phase = { source: db.source, target: db.target, tables: TABLES, log };
    await copySchemaPhase({ ...phase, phase: 'pre-data' });
    // The copied rows, plus one the source's key would refuse (written as apply writes: no triggers).
    await db.target.query(`SET session_replication_role = replica;
      INSERT INTO public.parent SELECT generate_series(1, 10); INSERT INTO public.child SELECT g, g FROM generate_series(1, 10) g;
      INSERT INTO public.child VALUES (11, 99); RESET session_replication_role`);
    await copySchemaPhase({ ...phase, phase: 'post-data' });
    const state = async (): Promise<{ valid: boolean; analyzed: number }> =>
      (
        await db.target.query(`SELECT (SELECT convalidated FROM pg_constraint WHERE conname = 'child_parent_fkey') AS valid,
          (SELECT sum(analyze_count)::int FROM pg_stat_user_tables WHERE relname IN ('parent', 'child')) AS analyzed`)
      ).rows[0];
    expect(await state()).toEqual({ valid: false, analyzed: 0 });

    const signal = new AbortController().signal;
    const failed = await finishSchemaWhileStreaming({ ...phase, signal }).catch((err: unknown) => err);
    expect(failed).toBeInstanceOf(SchemaError);
    expect((failed as Error).message).toMatch(/^target: cannot create validation of foreign key "child_parent_fkey" on table "public"\."child" \(.*violates foreign key constraint.*\); fix the target/);
    expect((failed as Error).message).not.toContain('\n');

    await db.target.query(`DELETE FROM public.child WHERE id = 11`);
    expect(await finishSchemaWhileStreaming({ ...phase, signal })).toBe(3);
    expect(await state()).toEqual({ valid: true, analyzed: 2 });
    // At the next start: nothing left to do.
    expect(await finishSchemaWhileStreaming({ ...phase, signal })).toBe(0);
    expect(await state()).toEqual({ valid: true, analyzed: 2 });
  });
});

/**
 * The step runs beside streaming on its own session; a lost connection is retried, not reported
 * as a failure. `slow`'s expression index makes its ANALYZE take seconds (the function sleeps: a
 * stand-in for a big table), long enough to terminate that session while it runs.
 */
describe('schema copy: the step run while streaming, after a lost connection', () => {
  let db: TestDatabases;
  let app: App | undefined;
  const lines: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabases('finishre');
    await db.source.query(slowTable(300));
  });

  afterAll(async () => {
    await app?.stop();
    await db?.drop();
  });

  it('retries once its session is terminated, and ends done', async () => {
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub` }, { log: captureLogger(lines, 'info') });
    const analyzing = `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND query LIKE 'ANALYZE %slow%'`;
    await waitFor(async () => ((await db.target.query(analyzing)).rowCount ?? 0) > 0, 'ANALYZE of slow running');
    expect(app.status.schemaFinishing?.state).toBe('running');
    await db.target.query(`SELECT pg_terminate_backend(pid) FROM (${analyzing}) a`);
    await waitFor(() => lines.some((l) => l.includes('the last step lost its connection; retrying')), 'the retry');
    await waitFor(() => app!.status.schemaFinishing?.state !== 'running', 'the step to end', 60_000);
    expect(app.status.schemaFinishing).toEqual({ state: 'done', error: null });
    const { rows } = await db.target.query<{ n: number }>(`SELECT analyze_count::int AS n FROM pg_stat_user_tables WHERE relname = 'slow'`);
    expect(rows[0]!.n).toBe(1);
  });
});
