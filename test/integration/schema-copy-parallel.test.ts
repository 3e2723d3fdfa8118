import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { captureLogger, startInProcess } from '../support/pgferry.js';
import { applySchemaObjects, planSchemaCopy } from '../../src/schema/copy-schema.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { PATH: process.env['PATH'] ?? '', PGFERRY_LOG_LEVEL: 'silent' }, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Post-data work for several sessions: indexes on a few tables, a unique constraint and a unique
 * index that foreign keys reference, check and exclusion constraints, a partitioned table with an
 * index, a unique constraint and a partition's own index.
 */
const SCHEMA = `
CREATE TABLE public.a (id int PRIMARY KEY, code text NOT NULL, x int, y int);
CREATE INDEX a_block ON public.a (x);
CREATE INDEX a_fail ON public.a (y);
CREATE INDEX a_x_y ON public.a (x, y);
ALTER TABLE public.a ADD CONSTRAINT a_code_key UNIQUE (code);
ALTER TABLE public.a ADD CONSTRAINT a_x_check CHECK (x >= 0);
CREATE TABLE public.b (id int PRIMARY KEY, a_code text REFERENCES public.a (code), v int NOT NULL);
CREATE INDEX b_a_code ON public.b (a_code);
CREATE INDEX b_v ON public.b (v);
CREATE UNIQUE INDEX b_v_id ON public.b (v, id);
CREATE TABLE public.c (id int PRIMARY KEY, b_v int, b_id int, w int, during int4range, FOREIGN KEY (b_v, b_id) REFERENCES public.b (v, id));
CREATE INDEX c_w ON public.c (w);
CREATE INDEX c_b ON public.c (b_v, b_id);
ALTER TABLE public.c ADD CONSTRAINT c_during EXCLUDE USING gist (during WITH &&);
CREATE TABLE public.m (id int NOT NULL, k int NOT NULL, v int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE public.m1 PARTITION OF public.m FOR VALUES FROM (0) TO (1000);
CREATE TABLE public.m2 PARTITION OF public.m FOR VALUES FROM (1000) TO (2000);
CREATE INDEX m_v ON public.m (v);
CREATE INDEX m1_v_id ON public.m1 (v, id);
ALTER TABLE public.m ADD CONSTRAINT m_v_k UNIQUE (v, k);
INSERT INTO public.a SELECT g, 'code ' || g, g % 97, g % 13 FROM generate_series(1, 3000) g;
INSERT INTO public.b SELECT g, 'code ' || (g % 3000 + 1), g % 50 FROM generate_series(1, 3000) g;
INSERT INTO public.c SELECT g, g % 50, g, g % 7, int4range(g * 10, g * 10 + 5) FROM generate_series(1, 3000) g;
INSERT INTO public.m SELECT g, g % 2000, g FROM generate_series(1, 3000) g;
`;

/**
 * Target-side recorder: every DDL command's start and end, with the backend that ran it, in one
 * sequence (ids follow real time). While `inject` is on, CREATE INDEX a_block waits for an
 * advisory lock the test holds and CREATE INDEX a_fail fails.
 */
const RECORDER = `
CREATE SCHEMA ddl_log;
CREATE TABLE ddl_log.events (id bigint GENERATED ALWAYS AS IDENTITY, event text, pid int, query text);
CREATE TABLE ddl_log.inject (on_ boolean);
INSERT INTO ddl_log.inject VALUES (true);
CREATE FUNCTION ddl_log.record() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO ddl_log.events (event, pid, query) VALUES (TG_EVENT, pg_backend_pid(), current_query());
  IF TG_EVENT = 'ddl_command_start' AND (SELECT on_ FROM ddl_log.inject) THEN
    IF current_query() LIKE 'CREATE INDEX a_block %' THEN PERFORM pg_advisory_xact_lock(4242); END IF;
    IF current_query() LIKE 'CREATE INDEX a_fail %' THEN RAISE EXCEPTION 'injected failure'; END IF;
  END IF;
END $$;
CREATE EVENT TRIGGER ddl_log_start ON ddl_command_start EXECUTE FUNCTION ddl_log.record();
CREATE EVENT TRIGGER ddl_log_end ON ddl_command_end EXECUTE FUNCTION ddl_log.record();
`;

interface Statement {
  pid: number;
  query: string;
  start: number;
  end: number;
}

/** Post-data statements that ran to completion, each with the ids of its start and end events. */
async function statements(db: TestDatabases): Promise<Statement[]> {
  const { rows } = await db.target.query<{ id: string; event: string; pid: number; query: string }>(`SELECT id, event, pid, query FROM ddl_log.events ORDER BY id`);
  const open = new Map<number, { start: number; query: string }>();
  const done: Statement[] = [];
  for (const r of rows) {
    if (r.event === 'ddl_command_start') open.set(r.pid, { start: Number(r.id), query: r.query });
    else if (open.get(r.pid)?.query === r.query) done.push({ pid: r.pid, query: r.query, start: open.get(r.pid)!.start, end: Number(r.id) });
  }
  return done;
}

/** Index builds and constraints other than foreign keys (on the migrated tables, not pgferry's own). */
function isBuild(done: Statement[]): Statement[] {
  return done.filter((s) => /^CREATE (UNIQUE )?INDEX \w+ ON (ONLY )?public\./.test(s.query) || (/^ALTER TABLE (ONLY )?"public"\.\S+ ADD CONSTRAINT /.test(s.query) && !/FOREIGN KEY|PRIMARY KEY/.test(s.query)));
}

/** The table family a statement locks: partitions belong to their root. */
function family(query: string): string {
  const table = /(?: ON (?:ONLY )?|ALTER TABLE (?:ONLY )?)"?public"?\."?(\w+)"?/.exec(query)?.[1] ?? '?';
  return table.startsWith('m') ? 'm' : table;
}

describe('post-data on parallel sessions', () => {
  let db: TestDatabases;
  let app: App | undefined;

  beforeAll(async () => {
    db = await createTestDatabases('postpar');
    await db.source.query(SCHEMA);
    await db.target.query(RECORDER);
  });

  afterAll(async () => {
    await app?.stop();
    await db?.drop();
  });

  it('a failing index stops post-data with one line naming it, and the statements still running are cancelled', async () => {
    await db.target.query('BEGIN');
    await db.target.query('SELECT pg_advisory_xact_lock(4242)');
    let r: ReturnType<typeof cli>;
    try {
      r = cli(['start', '--http-port', '0', '--source', db.sourceUrl, '--target', db.targetUrl, '--slot', db.slot]);
    } finally {
      await db.target.query('ROLLBACK');
    }
    expect(r.stderr.trim().split('\n')).toEqual([
      'pgferry: target: cannot create index "public"."a_fail" on table "public"."a" (P0001: injected failure); fix the target, or start with --schema-copy=false and create the schema yourself',
    ]);
    expect(r.code).toBe(1);
    // Without the cancel, pgferry would still be waiting for a_block (for the lock this test held).
    const done = await statements(db);
    expect(done.map((s) => s.query).filter((q) => /^CREATE INDEX a_(block|fail) /.test(q))).toEqual([]);
  });

  it('a new start builds the rest on several sessions, one family at a time where locks conflict, foreign keys afterwards', async () => {
    const firstRun = isBuild(await statements(db));
    const watermark = Math.max(...firstRun.map((s) => s.end));
    await db.target.query(`UPDATE ddl_log.inject SET on_ = false`);
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot });
    await waitFor(() => app!.status.phase === 'streaming', 'phase streaming', 120_000);
    await app.stop();

    const done = (await statements(db)).filter((s) => s.start > watermark);
    const builds = isBuild(done);
    const foreignKeys = done.filter((s) => /ADD CONSTRAINT .* FOREIGN KEY/.test(s.query));
    const name = (s: Statement): string => /INDEX (\w+)|CONSTRAINT "(\w+)"/.exec(s.query)!.slice(1).join('');
    expect(builds.map(name)).toEqual(expect.arrayContaining(['a_block', 'a_fail']));
    expect([...firstRun.map(name), ...builds.map(name)].sort()).toEqual(
      ['a_block', 'a_fail', 'a_x_y', 'a_code_key', 'a_x_check', 'b_a_code', 'b_v', 'b_v_id', 'c_w', 'c_b', 'c_during', 'm_v', 'm1_v_id', 'm_v_k'].sort(),
    );
    expect(new Set(builds.map((s) => s.pid)).size).toBeGreaterThan(1);
    expect(foreignKeys).toHaveLength(2);
    for (const fk of foreignKeys) for (const b of builds) expect(fk.start).toBeGreaterThan(b.end);
    // A statement that takes a lock conflicting with its own runs with nothing else of its family.
    for (const alone of builds.filter((s) => / ADD CONSTRAINT /.test(s.query))) {
      for (const other of builds.filter((s) => s !== alone && family(s.query) === family(alone.query))) {
        expect(other.end < alone.start || other.start > alone.end, `${alone.query} overlaps ${other.query}`).toBe(true);
      }
    }

    const verify = cli(['verify', '--source', db.sourceUrl, '--target', db.targetUrl, '--slot', db.slot]);
    expect(verify.stderr).toBe('');
    expect(verify.code).toBe(0);
  });

  it('a target that refuses more sessions gets its indexes built on the one it gave, with a warning', async () => {
    await db.target.query('DROP INDEX public.b_v, public.c_w');
    const plan = await planSchemaCopy(db.source, db.target, []);
    expect(plan.postData.filter((o) => o.lock).map((o) => o.key)).toEqual(expect.arrayContaining(['index "public"."b_v"', 'index "public"."c_w"']));
    const lines: string[] = [];
    await applySchemaObjects(db.target, 'post-data', plan.postData, { log: captureLogger(lines), connect: () => Promise.reject(new Error('sorry, too many clients already')) });
    expect((await db.target.query(`SELECT count(*)::int AS n FROM pg_indexes WHERE indexname IN ('b_v', 'c_w')`)).rows[0].n).toBe(2);
    expect(lines.filter((l) => l.includes('cannot open another target session'))).toHaveLength(1);
  });
});
