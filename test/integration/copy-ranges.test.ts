import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listSourceTables } from '../../src/source/catalog.js';
import type { TableProgress } from '../../src/snapshot/copy.js';
import { beginSnapshotPhase, ensureStateSchema } from '../../src/apply/state-store.js';
import { fingerprint } from '../../src/demo/sample.js';
import { copyUnderNewSlot } from '../support/copy.js';
import { createTestDatabases, type TestDatabases } from '../support/databases.js';

/** Every table as FROM-able names for fingerprints (par without its inheritance child). */
const TABLES = ['r', 'pt', 'ONLY par', 'chi', 'f'];

describe('initial copy in block ranges and leaf partitions, several workers per table', () => {
  let db: TestDatabases;

  beforeAll(async () => {
    db = await createTestDatabases('copyranges');
    const common = `
      CREATE TABLE r (id int PRIMARY KEY, v text, pad text);
      CREATE TABLE pt (id int, region text, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
      CREATE TABLE par (id int PRIMARY KEY, v text);
      CREATE TABLE chi (extra int) INHERITS (par);
      CREATE TABLE f (id int PRIMARY KEY, v text);`;
    await db.source.query(`${common}
      CREATE TABLE pt_a PARTITION OF pt FOR VALUES IN ('a');
      CREATE TABLE pt_b PARTITION OF pt FOR VALUES IN ('b');
      CREATE TABLE pt_c PARTITION OF pt FOR VALUES IN ('c')`);
    // The target splits pt differently: rows read per source leaf are routed by the target's root.
    await db.target.query(`${common}
      CREATE TABLE pt_target_ab PARTITION OF pt FOR VALUES IN ('a', 'b');
      CREATE TABLE pt_target_rest PARTITION OF pt DEFAULT;
      ALTER TABLE f ADD CHECK (id <> 5000)`);
    await ensureStateSchema(db.target);
    await db.source.query(`
      INSERT INTO r SELECT g, 'v' || g, repeat('p', 50) FROM generate_series(1, 20000) g;
      INSERT INTO pt SELECT g, 'a', 'a' || g FROM generate_series(1, 8000) g;
      INSERT INTO pt SELECT g, 'b', 'b' || g FROM generate_series(1, 50) g;
      INSERT INTO par SELECT g, 'parent' FROM generate_series(1, 5000) g;
      INSERT INTO chi SELECT g, 'child', g FROM generate_series(5001, 6000) g;
      INSERT INTO f SELECT g, repeat('f', 40) FROM generate_series(1, 5000) g`);
  });

  afterAll(async () => {
    await db?.drop();
  });

  const copy = async (slot: string, tableNames: string[], after: () => Promise<void>): Promise<Map<string, TableProgress>> => {
    const { tables } = await listSourceTables(db.source, tableNames.map((name) => ({ schema: 'public', name })));
    await beginSnapshotPhase(db.target, slot, tables);
    return copyUnderNewSlot(db, slot, tables, { afterExport: after, workers: 3, rangeBlocks: 7 });
  };

  it('copies exactly the snapshot: no row lost or doubled across ranges, whatever moves after the export', async () => {
    const expected = await fingerprint(db.source, TABLES.slice(0, 4));
    const progress = await copy('ranges_exact', ['r', 'pt', 'par', 'chi'], async () => {
      // After the export: new row versions land in later (and new) blocks, old ones stay where the snapshot sees them.
      await db.source.query(`UPDATE r SET v = 'moved' WHERE id % 3 = 0; DELETE FROM r WHERE id % 5 = 0;
        INSERT INTO r SELECT g, 'late', '' FROM generate_series(20001, 25000) g;
        UPDATE pt SET region = 'c' WHERE id % 4 = 0 AND region = 'a'; INSERT INTO pt SELECT g, 'b', 'late' FROM generate_series(51, 3000) g;
        UPDATE par SET v = 'moved' WHERE id % 2 = 0; INSERT INTO chi VALUES (7000, 'late', 1)`);
      await db.source.query('VACUUM r, pt, par');
    });
    expect(await fingerprint(db.target, TABLES.slice(0, 4))).toEqual(expected);
    expect((await db.source.query(`SELECT count(*)::int AS n FROM pt_c`)).rows[0].n).toBeGreaterThan(0); // a leaf added rows only after the export
    const { rows } = await db.target.query(`SELECT table_name, state, rows_copied::int AS rows, units_copied AS units FROM pgferry.table_copy WHERE slot = 'ranges_exact' ORDER BY 1`);
    expect(rows).toMatchObject([
      { table_name: 'chi', state: 'copied', rows: 1000 },
      { table_name: 'par', state: 'copied', rows: 5000 },
      { table_name: 'pt', state: 'copied', rows: 8050 },
      { table_name: 'r', state: 'copied', rows: 20000 },
    ]);
    // Several units per table: r and par in block ranges, pt by leaf (its large leaf in ranges too).
    for (const name of ['r', 'par', 'pt']) expect(rows.find((x) => x.table_name === name)!.units).toBeGreaterThan(2);
    expect([...progress].map(([k, p]) => [k, p.state, p.rowsCopied])).toEqual(
      expect.arrayContaining([['public.r', 'copied', 20000], ['public.pt', 'copied', 8050], ['public.par', 'copied', 5000], ['public.chi', 'copied', 1000]]),
    );
  });

  it('marks a table copied only when all its ranges committed', async () => {
    // The target refuses the last row, which lies in the last range: the ranges before it commit, the table stays unmarked.
    const attempt = copy('ranges_partial', ['f'], async () => {});
    await expect(attempt).rejects.toThrow(/copy of public\.f blocks \d+-end failed/);
    const { rows: [f] } = await db.target.query(`SELECT state, units_copied AS units, rows_copied::int AS rows FROM pgferry.table_copy WHERE slot = 'ranges_partial'`);
    expect(f.units).toBeGreaterThan(0);
    expect(f.state).not.toBe('copied');
    expect((await db.target.query(`SELECT count(*)::int AS n FROM f`)).rows[0].n).toBe(f.rows);
  });
});
