import { describe, expect, it } from 'vitest';
import { planCopyUnits, type CopiedRelation } from '../../../src/snapshot/plan.js';
import type { SourceTable } from '../../../src/source/catalog.js';

const table = (oid: number, name: string, relkind: 'r' | 'p' = 'r'): SourceTable => ({ oid, schema: 'public', name, relkind, columns: ['id', 'Note'] });
const big = table(1, 'big');
const small = table(2, 'small');
const parted = table(3, 'parted', 'p');

describe('planCopyUnits', () => {
  it('splits a relation larger than a range into block ranges that cover every block, the last one open-ended', () => {
    const units = planCopyUnits([{ table: big, leaf: big, blocks: 25 }], 4, 10);
    expect(units.map((u) => u.copyOut)).toEqual([
      `COPY (SELECT "id", "Note" FROM ONLY "public"."big" WHERE ctid < '(10,0)'::tid) TO STDOUT`,
      `COPY (SELECT "id", "Note" FROM ONLY "public"."big" WHERE ctid >= '(10,0)'::tid AND ctid < '(20,0)'::tid) TO STDOUT`,
      `COPY (SELECT "id", "Note" FROM ONLY "public"."big" WHERE ctid >= '(20,0)'::tid) TO STDOUT`,
    ]);
    expect(units.map((u) => u.blocks)).toEqual([10, 10, 5]);
    expect(units.map((u) => u.label)).toEqual(['public.big blocks 0-10', 'public.big blocks 10-20', 'public.big blocks 20-end']);
  });

  it('copies a relation of at most one range whole, with COPY of the table (never its inheritance children)', () => {
    expect(planCopyUnits([{ table: small, leaf: small, blocks: 10 }], 4, 10).map((u) => u.copyOut)).toEqual([`COPY "public"."small" ("id", "Note") TO STDOUT`]);
    // An empty table (or one sized at 0 blocks) is still one unit: it must be marked copied.
    expect(planCopyUnits([{ table: small, leaf: small, blocks: 0 }], 4).map((u) => u.copyOut)).toEqual([`COPY "public"."small" ("id", "Note") TO STDOUT`]);
  });

  it('reads each leaf partition ONLY, for the partitioned table, and a root without heap leaves through the root', () => {
    const relations: CopiedRelation[] = [
      { table: parted, leaf: { schema: 'public', name: 'parted_a' }, blocks: 3 },
      { table: parted, leaf: { schema: 'public', name: 'parted_b' }, blocks: 15 },
    ];
    const units = planCopyUnits(relations, 2, 10);
    expect(units.every((u) => u.table === parted)).toBe(true);
    expect(units.map((u) => u.label)).toEqual(['public.parted_b blocks 0-10', 'public.parted_b blocks 10-end', 'public.parted_a']);
    expect(units[2]!.copyOut).toBe(`COPY "public"."parted_a" ("id", "Note") TO STDOUT`);
    expect(planCopyUnits([{ table: parted, leaf: null, blocks: 0 }], 2).map((u) => u.copyOut)).toEqual([`COPY (SELECT "id", "Note" FROM "public"."parted") TO STDOUT`]);
  });

  it('puts the largest tables first, each table in range order', () => {
    const units = planCopyUnits([{ table: small, leaf: small, blocks: 5 }, { table: big, leaf: big, blocks: 30 }], 4, 10);
    expect(units.map((u) => u.label)).toEqual(['public.big blocks 0-10', 'public.big blocks 10-20', 'public.big blocks 20-end', 'public.small']);
  });

  it('sizes ranges from the data: a few per worker, at least 8 MB, at most 1 GB', () => {
    const count = (blocks: number, workers: number): number => planCopyUnits([{ table: big, leaf: big, blocks }], workers).length;
    expect(count(1000, 4)).toBe(1); // under one minimum range
    expect(count(16 * 2048, 4)).toBe(16); // 4 workers x 4 ranges
    expect(count(10_000_000, 1)).toBe(Math.ceil(10_000_000 / 131_072));
  });
});
