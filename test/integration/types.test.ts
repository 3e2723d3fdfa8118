import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { FIXED_SESSION, rowCount } from '../support/compare.js';
import { waitForNoDifferences } from '../support/converge.js';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { captureLogger, startInProcess } from '../support/pgferry.js';
import { untilStreaming } from '../support/streaming.js';
import { availableExtensions, bigText, typeColumns, typeSetup, type TypeColumn } from '../support/type-catalog.js';

/**
 * Every built-in type family, copied and streamed between servers whose databases disagree on
 * TimeZone, DateStyle, IntervalStyle, extra_float_digits and bytea_output. Values are compared
 * under one fixed session on both servers: output text, md5(col::text) and the binary send form.
 */

/** Source and target database defaults that differ from each other and from pgferry's session settings. */
const SOURCE_DB_SETTINGS = { TimeZone: 'Pacific/Chatham', DateStyle: 'SQL, DMY', extra_float_digits: '0', IntervalStyle: 'sql_standard', bytea_output: 'escape' };
const TARGET_DB_SETTINGS = { TimeZone: 'America/St_Johns', DateStyle: 'Postgres, MDY', extra_float_digits: '1', IntervalStyle: 'iso_8601', bytea_output: 'hex' };

async function alterDatabase(client: pg.Client, name: string, settings: Record<string, string>): Promise<void> {
  for (const [k, v] of Object.entries(settings)) await client.query(`ALTER DATABASE ${name} SET ${k} = '${v}'`);
}

/** Column definitions with defaults whose deparsed form depends on the session (checked after schema copy). */
const DEFAULTS = `dflt_tstz timestamptz DEFAULT '2026-01-02 03:04:05.678+00', dflt_d date DEFAULT '2026-01-02', dflt_f float8 DEFAULT 0.1,
  dflt_iv interval DEFAULT '1 day 02:03:04.5', dflt_m money DEFAULT 1.5`;

/** The value of `col` in row `row` with variant shift `shift` (every column cycles through its values; some rows get NULL). */
function valueFor(col: TypeColumn, ci: number, row: number, shift: number): string {
  if ((row + ci + shift) % 11 === 10) return 'NULL';
  return `${col.values[(row + ci + shift) % col.values.length]!}::${col.type}`;
}

function insertSql(table: string, cols: TypeColumn[], rows: number[], shift: number): string {
  const values = rows.map((r) => `(${r}, ${cols.map((c, ci) => valueFor(c, ci, r, shift)).join(', ')})`);
  return `INSERT INTO ${table} (id, ${cols.map((c) => c.name).join(', ')}) VALUES ${values.join(',\n')}`;
}

function updateSql(table: string, cols: TypeColumn[], row: number, shift: number, skip: string[] = []): string {
  const set = cols.flatMap((c, ci) => (skip.includes(c.name) ? [] : [`${c.name} = ${valueFor(c, ci, row, shift)}`]));
  return `UPDATE ${table} SET ${set.join(', ')} WHERE id = ${row}`;
}

const TABLES = ['public.everything', 'public.everything_full'];
const KEYS = { 'public.everything': ['id'], 'public.everything_full': ['id'] };

describe('type fidelity: copy and stream, with different session defaults on each side', () => {
  let db: TestDatabases;
  let app: App | undefined;
  let cols: TypeColumn[];
  const logs: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabases('types');
    const ext = await availableExtensions([db.source, db.target]);
    cols = typeColumns(ext);
    const body = `id integer NOT NULL, ${cols.map((c) => `${c.name} ${c.type}`).join(', ')}`;
    // Created on the source only: pgferry's schema copy creates the types, domains and tables on the target.
    await db.source.query(`${typeSetup(ext)}
      CREATE TABLE public.everything (${body}, PRIMARY KEY (id));
      CREATE TABLE public.everything_full (${body});
      ALTER TABLE public.everything_full REPLICA IDENTITY FULL;`);
    const rows = Array.from({ length: 24 }, (_, i) => i + 1);
    for (const t of TABLES) {
      await db.source.query(insertSql(t, cols, rows, 0));
      await db.source.query(`INSERT INTO ${t} (id) VALUES (0)`); // every column NULL (defaults aside)
    }
    await alterDatabase(db.source, db.name, SOURCE_DB_SETTINGS);
    await alterDatabase(db.target, db.name, TARGET_DB_SETTINGS);
  });

  afterAll(async () => {
    await app?.stop();
    await db?.drop();
  });

  it('the database defaults really differ between the sides (a new session sees them)', async () => {
    const show = async (url: string): Promise<Record<string, string>> => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        const { rows: [r] } = await c.query(`SELECT current_setting('TimeZone') AS tz, current_setting('DateStyle') AS ds, current_setting('extra_float_digits') AS efd, now()::text AS now`);
        return r;
      } finally {
        await c.end();
      }
    };
    const [s, t] = [await show(db.sourceUrl), await show(db.targetUrl)];
    expect(s).toMatchObject({ tz: 'Pacific/Chatham', ds: 'SQL, DMY', efd: '0' });
    expect(t).toMatchObject({ tz: 'America/St_Johns', ds: 'Postgres, MDY', efd: '1' });
  });

  it('initial copy and streamed inserts, set-based updates, key changes, TOAST-unchanged updates and deletes arrive byte for byte', async () => {
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub` }, { log: captureLogger(logs, 'warn') });
    await untilStreaming(app);
    const context = (): string => `pgferry phase ${app!.status.phase}, last error: ${app!.status.lastError ?? 'none'}\n${logs.slice(-5).join('')}`;
    await waitForNoDifferences(db.source, db.target, TABLES, { keys: KEYS, context });
    expect(await rowCount(db.target, 'public.everything')).toBe(25);

    const tx = async (statements: string[]): Promise<void> => {
      await db.source.query('BEGIN');
      for (const s of statements) await db.source.query(s);
      await db.source.query('COMMIT');
    };
    for (const t of TABLES) {
      // A few inserts (INSERT statements) and many (COPY) in separate transactions.
      await tx([insertSql(t, cols, [101, 102, 103], 3)]);
      await tx([insertSql(t, cols, Array.from({ length: 30 }, (_, i) => 201 + i), 5)]);
      // Several updates by key in one transaction, every column assigned: a set-based run on a keyed table.
      await tx(Array.from({ length: 12 }, (_, i) => updateSql(t, cols, i + 1, 7)));
      // The same, leaving the TOASTed column alone (sent as "unchanged"), on rows copied and rows streamed.
      await tx([...[13, 14, 15, 16, 17, 18].map((r) => updateSql(t, cols, r, 2, ['big'])), ...[201, 202, 203, 204].map((r) => updateSql(t, cols, r, 9, ['big']))]);
      // One statement updating many rows: one column changes, every other value is sent again.
      await tx([`UPDATE ${t} SET i4 = coalesce(i4, 0) / 2 + 1 WHERE id BETWEEN 1 AND 24 OR id BETWEEN 205 AND 215`]);
      // NULLs to values and back.
      await tx([updateSql(t, cols, 0, 1), `UPDATE ${t} SET ${cols.map((c) => `${c.name} = NULL`).join(', ')} WHERE id = 19`]);
      // Key changes.
      await tx([`UPDATE ${t} SET id = id + 1000 WHERE id IN (5, 6, 216)`, `UPDATE ${t} SET id = 7000, big = ${bigText(77)} WHERE id = 7`]);
      // Deletes by key in one run, and a mixed transaction.
      await tx([`DELETE FROM ${t} WHERE id IN (8, 9, 10, 217, 218, 102)`]);
      await tx([insertSql(t, cols, [300], 4), updateSql(t, cols, 300, 6), updateSql(t, cols, 11, 8), `DELETE FROM ${t} WHERE id = 12`, updateSql(t, cols, 220, 3, ['big'])]);
    }
    await waitForNoDifferences(db.source, db.target, TABLES, { keys: KEYS, context });
    for (const t of TABLES) expect(await rowCount(db.target, t)).toBe(25 + 3 + 30 - 6 - 1 + 1);

    // Spot checks that the comparison is not vacuous: edge values are there, in their exact form.
    await db.target.query(FIXED_SESSION);
    const spot = await db.target.query(`SELECT count(*) FILTER (WHERE f8::text = '-0') AS neg0, count(*) FILTER (WHERE num = 'NaN') AS nan,
        count(*) FILTER (WHERE num = 'Infinity') AS inf, count(*) FILTER (WHERE j::text = '{ "b" : 1,  "a":2, "a": 3 }') AS json_ws,
        count(*) FILTER (WHERE format('%s', ch) = 'ab    ') AS padded, count(*) FILTER (WHERE tstz = '-infinity') AS ninf,
        count(*) FILTER (WHERE ts::text = '1999-12-31 23:59:59.999999') AS micro FROM public.everything`);
    for (const [k, v] of Object.entries(spot.rows[0] as Record<string, string>)) expect(Number(v), k).toBeGreaterThan(0);
  });
});

describe('schema copy between servers with different TimeZone and DateStyle defaults', () => {
  let db: TestDatabases;
  let app: App | undefined;

  beforeAll(async () => {
    db = await createTestDatabases('typedefaults');
    await db.source.query(`CREATE TABLE public.defaults (id integer PRIMARY KEY, ${DEFAULTS})`);
    await db.source.query(`INSERT INTO public.defaults (id) VALUES (1), (2)`);
    await alterDatabase(db.source, db.name, SOURCE_DB_SETTINGS);
    await alterDatabase(db.target, db.name, TARGET_DB_SETTINGS);
  });

  afterAll(async () => {
    await app?.stop();
    await db?.drop();
  });

  it('creates columns whose constant defaults (timestamptz, date, float, interval, money) mean the same, and starts streaming', async () => {
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot });
    await untilStreaming(app);
    const defaults = async (c: pg.Client): Promise<unknown[]> => {
      await c.query(FIXED_SESSION);
      // Evaluated under the fixed session: the deparsed text may differ in form, the value must not.
      const { rows } = await c.query(`SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) AS expr FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
        WHERE d.adrelid = 'public.defaults'::regclass ORDER BY a.attnum`);
      const out: unknown[] = [];
      for (const r of rows as { attname: string; expr: string }[]) out.push([r.attname, (await c.query(`SELECT format('%s', ${r.expr}) AS v`)).rows[0].v]);
      return out;
    };
    const s = await defaults(db.source);
    expect(s.length).toBe(5);
    expect(await defaults(db.target)).toEqual(s);
    await waitForNoDifferences(db.source, db.target, ['public.defaults'], { keys: { 'public.defaults': ['id'] } });
    expect(await rowCount(db.target, 'public.defaults')).toBe(2);
  });
});

describe('xml content fragments when the target database defaults to xmloption = document', () => {
  let db: TestDatabases;
  let app: App | undefined;

  beforeAll(async () => {
    db = await createTestDatabases('typexml');
    await db.source.query(`CREATE TABLE public.docs (id integer PRIMARY KEY, x xml)`);
    await db.source.query(`INSERT INTO public.docs VALUES (1, 'fragment <b/> tail'), (2, '<a>document</a>'), (3, 'plain text')`);
    // Legal on the source (xmloption = content, the default); the target database parses as documents by default.
    await db.target.query(`ALTER DATABASE ${db.name} SET xmloption = document`);
  });

  afterAll(async () => {
    await app?.stop();
    await db?.drop();
  });

  it('copies and streams them unchanged', async () => {
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot });
    await untilStreaming(app);
    await db.source.query(`INSERT INTO public.docs VALUES (4, 'streamed <i>fragment</i>')`);
    await db.source.query(`UPDATE public.docs SET x = 'updated fragment <u/>' WHERE id IN (1, 2)`);
    const context = (): string => `pgferry phase ${app!.status.phase}, last error: ${app!.status.lastError ?? 'none'}`;
    await waitForNoDifferences(db.source, db.target, ['public.docs'], { keys: { 'public.docs': ['id'] }, timeoutMs: 30_000, context });
    expect(await rowCount(db.target, 'public.docs')).toBe(4);
  });
});
