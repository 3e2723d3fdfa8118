import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { createTestDatabases, serverUrl, waitFor, type TestDatabases } from '../support/databases.js';
import { startInProcess, waitForIdentical } from '../support/pgferry.js';
import { RICH_DATA, RICH_SCHEMA, RICH_TABLES } from '../support/schema-fixture.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { PATH: process.env['PATH'] ?? '', PGFERRY_LOG_LEVEL: 'silent' }, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const ROLE = `DO $$ BEGIN CREATE ROLE pgferry_reader_role; EXCEPTION WHEN duplicate_object THEN NULL; END $$;`;

describe('schema copy into an empty PostgreSQL 18 target, then verify', () => {
  let db: TestDatabases;
  let app: App | undefined;

  beforeAll(async () => {
    db = await createTestDatabases('schema');
    await db.source.query(RICH_SCHEMA + RICH_DATA);
    await db.target.query(ROLE); // roles are per server: grants to it are copied because it exists there too
  });

  afterAll(async () => {
    await app?.stop();
    await db?.drop();
  });

  it('pgferry schema prints pre-data and post-data separately, without touching anything', async () => {
    const r = cli(['schema', '--source', db.sourceUrl]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const pre = r.stdout.indexOf('-- ===== pre-data');
    const post = r.stdout.indexOf('-- ===== post-data');
    expect(pre).toBeGreaterThan(0);
    expect(post).toBeGreaterThan(pre);
    const table = r.stdout.indexOf('CREATE TABLE "Sales Ops"."Customers"');
    expect(table).toBeGreaterThan(pre);
    expect(table).toBeLessThan(post);
    expect(r.stdout.indexOf('FOREIGN KEY (customer_id) REFERENCES "Sales Ops"."Customers"("Id") NOT VALID')).toBeGreaterThan(post);
    expect(r.stdout).toContain('CREATE EXTENSION IF NOT EXISTS "citext" WITH SCHEMA "public"');
    expect((await db.target.query(`SELECT count(*)::int AS n FROM pg_class WHERE relnamespace = 'public'::regnamespace`)).rows[0].n).toBe(0);
  });

  it('pgferry start brings the whole schema and the data; verify finds them identical, then names a corrupted row', async () => {
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot });
    await waitFor(() => app!.status.phase === 'streaming', 'phase streaming', 120_000);
    // Live changes after the copy, including ones that fire the source trigger (its audit rows replicate;
    // the target's copy of the trigger must not fire during apply, or audit would get them twice).
    for (let i = 0; i < 20; i++) {
      await db.source.query(`INSERT INTO public.orders (customer_id, amount, qty, note) VALUES (100 + 2 * $1, 1.5, 2, 'live ' || $1)`, [i]);
      await db.source.query(`UPDATE "Sales Ops"."Customers" SET attrs = attrs || hstore('n', $1::text) WHERE "Id" = 100 + 2 * $1`, [i]);
    }
    await db.source.query(`DELETE FROM public.measurements WHERE id <= 10`);
    await waitForIdentical(db.source, db.target, RICH_TABLES);

    const one = async (sql: string): Promise<Record<string, unknown>> => (await db.target.query(sql)).rows[0];
    // Foreign keys are validated and tables analyzed while streaming.
    await waitFor(() => app!.status.schemaFinishing?.state === 'done', 'schema copy to finish', 60_000);
    expect(await one(`SELECT count(*)::int AS n FROM pg_stat_user_tables WHERE relname = 'orders' AND analyze_count = 1`)).toEqual({ n: 1 });
    // Recorded, so a restart does not plan it again.
    expect(await one(`SELECT schema_finished_at IS NOT NULL AS done FROM pgferry.migration WHERE slot = '${db.slot}'`)).toEqual({ done: true });
    expect(await one(`SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = '"Sales Ops"."Customers"'::regclass AND attname = 'email'`)).toEqual({ t: 'citext' });
    expect(await one(`SELECT attidentity AS i FROM pg_attribute WHERE attrelid = '"Sales Ops"."Customers"'::regclass AND attname = 'Id'`)).toEqual({ i: 'a' });
    expect(await one(`SELECT convalidated AS v FROM pg_constraint WHERE conname = 'orders_customer_id_fkey'`)).toEqual({ v: true });
    expect(await one(`SELECT count(*)::int AS n FROM pg_trigger WHERE tgname = 'orders_audit'`)).toEqual({ n: 1 });
    expect(await one(`SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'public.measurements'::regclass`)).toEqual({ n: 2 });
    expect(await one(`SELECT relreplident AS r FROM pg_class WHERE oid = 'public.audit'::regclass`)).toEqual({ r: 'f' });
    expect(await one(`SELECT obj_description('"Sales Ops"."Customers"'::regclass, 'pg_class') AS c`)).toEqual({ c: 'customers' });
    expect(await one(`SELECT has_table_privilege('pgferry_reader_role', 'public.orders', 'INSERT') AS g`)).toEqual({ g: true });
    expect(await one(`SELECT count(*)::int AS n FROM "Sales Ops"."Open Orders"`)).toEqual(await (async () => (await db.source.query(`SELECT count(*)::int AS n FROM "Sales Ops"."Open Orders"`)).rows[0])());
    expect(await one(`SELECT count(*)::int AS n FROM public.order_totals`)).toEqual({ n: 200 });
    expect(await one(`SELECT "Sales Ops"."Next Code"() LIKE 'C-%' AS ok`)).toEqual({ ok: true });

    const args = ['verify', '--source', db.sourceUrl, '--target', db.targetUrl, '--slot', db.slot, '--chunk-rows', '150'];
    const same = cli(args);
    expect(same.stderr).toBe('');
    expect(same.stdout).toContain('identical  public.orders: 1020 rows');
    expect(same.stdout).toMatch(/^identical: 6 table\(s\) match$/m);
    expect(same.code).toBe(0);

    // Writers stopped and pgferry stopped (as after a cutover): a difference now is the target's own.
    await app.stop();
    await db.target.query(`UPDATE public.orders SET note = 'tampered' WHERE id = 777`);
    const bad = cli([...args, '--tables', 'public.orders,"Sales Ops"."Customers"']);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain('DIFFERS    public.orders: 1020 rows on the source, 1020 on the target');
    expect(bad.stdout).toContain('("id")=(777): differs');
    expect(bad.stdout).toContain('identical  Sales Ops.Customers: 200 rows');
    const json = JSON.parse(cli([...args, '--tables', 'public.orders', '--json']).stdout);
    expect(json.identical).toBe(false);
    expect(json.tables[0].rows).toEqual([{ key: '("id")=(777)', kind: 'differs' }]);
  });

  it('verify exits 2 on bad input, with one line naming the setting', () => {
    const r = cli(['verify', '--source', db.sourceUrl, '--chunk-rows', 'x']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual(['pgferry: --target (or PGFERRY_TARGET_URL) is required: the database URL, e.g. postgresql://user@host:5432/db']);
  });
});

describe('schema copy refuses a target object that differs, and works between servers of the same version', () => {
  let db: TestDatabases;
  let same: pg.Client | undefined;
  const sameName = `schema_same_${process.pid}`;

  beforeAll(async () => {
    db = await createTestDatabases('conflict');
    await db.source.query(`CREATE TABLE "Odd ""Name""" (id int PRIMARY KEY, v text); CREATE TABLE ok (id int PRIMARY KEY)`);
    await db.target.query(`CREATE TABLE "Odd ""Name""" (id int PRIMARY KEY, v bigint)`);
  });

  afterAll(async () => {
    await same?.end();
    const admin = new pg.Client({ connectionString: serverUrl('source', 'postgres') });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${sameName} WITH (FORCE)`);
    await admin.end();
    await db?.drop();
  });

  it('pgferry start stops before copying, with one line naming the object and the difference', async () => {
    const r = cli(['start', '--http-port', '0', '--source', db.sourceUrl, '--target', db.targetUrl, '--slot', db.slot]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      'pgferry: target: table "public"."Odd ""Name""" differs from the source (column "v": text on the source, bigint on the target); change or drop it on the target, or start with --schema-copy=false',
    ]);
    expect((await db.target.query(`SELECT to_regclass('public.ok') AS t`)).rows[0].t).toBeNull();
  });

  it('applies the rich schema from 14 to 14 with pgferry schema, and then has nothing left to do', async () => {
    const admin = new pg.Client({ connectionString: serverUrl('source', 'postgres') });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${sameName}`);
    await admin.end();
    same = new pg.Client({ connectionString: serverUrl('source', sameName) });
    await same.connect();
    await db.source.query(`DROP TABLE "Odd ""Name""", ok; ${RICH_SCHEMA}`);
    const target = serverUrl('source', sameName);
    const applied = cli(['schema', '--source', db.sourceUrl, '--target', target]);
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
    const again = cli(['schema', '--source', db.sourceUrl, '--target', target, '--dry-run']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('-- ===== pre-data: before the initial copy (0 objects) =====');
    expect(again.stdout.split('\n').filter((l) => /^(CREATE|ALTER|COMMENT|GRANT)/.test(l))).toEqual([]);
    expect((await same.query(`SELECT pg_get_viewdef('"Sales Ops"."Open Orders"'::regclass) AS d`)).rows[0].d).toBe(
      (await db.source.query(`SELECT pg_get_viewdef('"Sales Ops"."Open Orders"'::regclass) AS d`)).rows[0].d,
    );
  });
});
