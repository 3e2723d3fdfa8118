import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listSourceTables } from '../../src/source/catalog.js';
import { binaryCopyTables } from '../../src/snapshot/copy-format.js';
import { beginSnapshotPhase, ensureStateSchema } from '../../src/apply/state-store.js';
import { diffTables, rowCount } from '../support/compare.js';
import { copyUnderNewSlot } from '../support/copy.js';
import { createTestDatabases, type TestDatabases } from '../support/databases.js';
import { typeColumns, typeSetup, type TypeColumn } from '../support/type-catalog.js';

/** Columns of user-defined or extension types, or arrays of them (of a domain too): their OIDs differ between servers. */
const NOT_PORTABLE = /mood|pair|nest|citext|hstore|posint\[\]/;
const NO_EXTENSIONS = { citext: false, hstore: false };

function valuesSql(table: string, cols: TypeColumn[], rows: number): string {
  const values = Array.from({ length: rows }, (_, r) => `(${r}, ${cols.map((c, ci) => ((r + ci) % 7 === 6 ? 'NULL' : `${c.values[(r + ci) % c.values.length]!}::${c.type}`)).join(', ')})`);
  return `INSERT INTO ${table} (id, ${cols.map((c) => c.name).join(', ')}) VALUES ${values.join(',\n')}`;
}

describe('binary COPY where every column type is portable, text otherwise', () => {
  let db: TestDatabases;
  const all = typeColumns(NO_EXTENSIONS);
  const portable = all.filter((c) => !NOT_PORTABLE.test(c.type));

  beforeAll(async () => {
    db = await createTestDatabases('copybinary');
    const body = (cols: TypeColumn[]): string => `id integer PRIMARY KEY, ${cols.map((c) => `${c.name} ${c.type}`).join(', ')}`;
    const ddl = `${typeSetup(NO_EXTENSIONS)}
      CREATE TABLE builtin (${body(portable)});
      CREATE TABLE mixed (${body(all)});
      CREATE TABLE aliased (id integer PRIMARY KEY, rel regclass, typs regtype[]);`;
    await db.source.query(`${ddl} CREATE TABLE widened (id integer PRIMARY KEY, v integer)`);
    // The target's types get other OIDs than the source's (created in another order, after others).
    await db.target.query(`CREATE TYPE public.filler AS ENUM ('x'); CREATE DOMAIN public.filler2 AS text; ${ddl} CREATE TABLE widened (id integer PRIMARY KEY, v bigint)`);
    await ensureStateSchema(db.target);
    await db.source.query(valuesSql('builtin', portable, 60));
    await db.source.query(valuesSql('mixed', all, 60));
    await db.source.query(`INSERT INTO aliased VALUES (1, 'builtin', '{integer,text}'), (2, 'pg_class', NULL); INSERT INTO widened SELECT g, g FROM generate_series(1, 10) g`);
  });

  afterAll(async () => {
    await db?.drop();
  });

  it('chooses binary only for tables whose columns all have the same built-in base type on both sides', async () => {
    const { tables } = await listSourceTables(db.source, []);
    const binary = await binaryCopyTables(db.source, db.target, tables);
    expect(tables.filter((t) => binary.has(t.oid)).map((t) => t.name)).toEqual(['builtin']);
    // Domains over built-in types and arrays of built-in types are portable: the table is not binary by accident of having none.
    expect(portable.map((c) => c.type)).toEqual(expect.arrayContaining(['public.posint', 'public.short_text', 'numeric[]', 'int4range[]']));
  });

  it('copies every type family byte for byte in both formats, by several workers', async () => {
    const { tables } = await listSourceTables(db.source, []);
    await beginSnapshotPhase(db.target, 'binary_copy', tables);
    const progress = await copyUnderNewSlot(db, 'binary_copy', tables, { workers: 3 });
    const names = ['public.builtin', 'public.mixed'];
    expect(await diffTables(db.source, db.target, names, Object.fromEntries(names.map((n) => [n, ['id']])))).toEqual([]);
    expect(await rowCount(db.target, 'builtin')).toBe(60);
    // Row counts of the binary stream are right too (progress and pgferry.table_copy).
    expect(progress.get('public.builtin')).toMatchObject({ state: 'copied', rowsCopied: 60 });
    const { rows } = await db.target.query(`SELECT table_name, rows_copied::int AS rows FROM pgferry.table_copy WHERE slot = 'binary_copy' ORDER BY 1`);
    expect(rows).toEqual([{ table_name: 'aliased', rows: 2 }, { table_name: 'builtin', rows: 60 }, { table_name: 'mixed', rows: 60 }, { table_name: 'widened', rows: 10 }]);
    // regclass went by name, not by OID; integer into bigint as the number.
    expect((await db.target.query(`SELECT id, rel::text, typs::text FROM aliased ORDER BY id`)).rows).toEqual([{ id: 1, rel: 'builtin', typs: '{integer,text}' }, { id: 2, rel: 'pg_class', typs: null }]);
    expect((await db.target.query(`SELECT sum(v)::int AS s FROM widened`)).rows[0].s).toBe(55);
  });
});
