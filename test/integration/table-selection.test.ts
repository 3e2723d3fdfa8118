import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { startInProcess } from '../support/pgferry.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

/** Runs `pgferry start` to completion (it fails at preflight, so it exits by itself). */
function start(args: string[]): { code: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'start', '--http-port', '0', ...args], {
    env: { PATH: process.env['PATH'] ?? '', PGFERRY_LOG_LEVEL: 'silent' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, stderr: r.stderr };
}

/** Tables in the target database's public schema: a refused start must not have written any. */
async function targetTables(db: TestDatabases): Promise<string[]> {
  return (await db.target.query<{ t: string }>(`SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)).rows.map((r) => r.t);
}

describe('which tables --tables and the source catalog let through', () => {
  let db: TestDatabases;
  let app: App | undefined;

  beforeAll(async () => {
    db = await createTestDatabases('tablesel');
    await db.source.query(`
      CREATE TABLE p (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
      CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100);
      CREATE TABLE p2 PARTITION OF p FOR VALUES FROM (100) TO (200);
      CREATE TABLE q (id int PRIMARY KEY) PARTITION BY RANGE (id);
      CREATE TABLE q1 PARTITION OF q FOR VALUES FROM (0) TO (100) PARTITION BY RANGE (id);
      CREATE TABLE q1a PARTITION OF q1 FOR VALUES FROM (0) TO (50);
      INSERT INTO p SELECT g, 'v' || g FROM generate_series(0, 199) g;
      CREATE TABLE parent (id int PRIMARY KEY, v text);
      CREATE TABLE child (extra int) INHERITS (parent);
      ALTER TABLE child ADD PRIMARY KEY (id);
      INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 10) g;
      INSERT INTO child SELECT g, 'c' || g, g FROM generate_series(11, 15) g;
      CREATE UNLOGGED TABLE unl (id int PRIMARY KEY);
      CREATE TABLE lg (id int PRIMARY KEY) PARTITION BY RANGE (id);
      CREATE TABLE lg_logged PARTITION OF lg FOR VALUES FROM (0) TO (100);
      CREATE UNLOGGED TABLE lg_unlogged PARTITION OF lg FOR VALUES FROM (100) TO (200);
      CREATE TABLE keyed (id int PRIMARY KEY);`);
  });

  afterAll(async () => {
    await app?.stop();
    await db?.drop();
  });

  it('refuses a partitioned table selected with one of its partitions, in one line per pair, before writing anything', async () => {
    const r = start(['--source', db.sourceUrl, '--target', db.targetUrl, '--slot', db.slot, '--tables', 'p,p1,q,q1a']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      'pgferry: source: --tables selects both public.p and its partition public.p1, whose rows public.p already includes (they would be copied and streamed twice); leave public.p1 out of --tables',
      'pgferry: source: --tables selects both public.q and its partition public.q1a, whose rows public.q already includes (they would be copied and streamed twice); leave public.q1a out of --tables',
    ]);
    expect(await targetTables(db)).toEqual([]);
    expect((await db.source.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [db.slot])).rowCount).toBe(0);
  });

  it('names each unlogged table and unlogged partition with the remedy, whether selected or found', async () => {
    const unl = 'pgferry: source: table public.unl is unlogged, so its changes cannot be replicated; run ALTER TABLE public.unl SET LOGGED on the source, or leave it out with --tables';
    const part = 'pgferry: source: partition public.lg_unlogged of table public.lg is unlogged, so its changes cannot be replicated; run ALTER TABLE public.lg_unlogged SET LOGGED on the source, or leave public.lg out with --tables';
    // Schema copy off: it writes the target's pre-data before the source's preflight runs.
    const selected = start(['--source', db.sourceUrl, '--target', db.targetUrl, '--slot', db.slot, '--schema-copy=false', '--tables', 'unl,lg,keyed']);
    expect(selected.code).toBe(1);
    expect(selected.stderr.trim().split('\n')).toContain(unl);
    expect(selected.stderr.trim().split('\n')).toContain(part);
    expect(selected.stderr).not.toContain('22023');
    expect(selected.stderr).not.toMatch(/^\s+at /m);
    // No --tables: refused the same way, not silently left out.
    const all = start(['--source', db.sourceUrl, '--target', db.targetUrl, '--slot', db.slot, '--schema-copy=false']);
    expect(all.code).toBe(1);
    expect(all.stderr.trim().split('\n')).toContain(unl);
    expect(all.stderr.trim().split('\n')).toContain(part);
    expect((await db.source.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [db.slot])).rowCount).toBe(0);
  });

  it('migrates an inheritance parent selected with its child without duplicating the child rows (each is copied and published ONLY)', async () => {
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot, tables: 'parent,child' });
    await waitFor(() => app!.status.phase === 'streaming' || app!.status.phase === 'failed', 'streaming');
    expect(app.status.phase, String(app.status.lastError)).toBe('streaming');
    await db.source.query(`INSERT INTO parent VALUES (100, 'p100'); INSERT INTO child VALUES (111, 'c111', 1); UPDATE child SET v = 'changed' WHERE id = 11`);
    const counts = async (c: typeof db.source): Promise<string> =>
      JSON.stringify((await c.query(`SELECT (SELECT count(*) FROM ONLY parent) AS parent, (SELECT count(*) FROM child) AS child, (SELECT v FROM child WHERE id = 11) AS v`)).rows[0]);
    const want = await counts(db.source);
    expect(want).toBe(JSON.stringify({ parent: '11', child: '6', v: 'changed' }));
    await waitFor(async () => (await counts(db.target)) === want, 'the target to hold each row once');
  });
});
