import { describe, expect, it } from 'vitest';
import { chunkHashQuery, describeKey, nextBoundaryQuery, rangePredicate, type VerifyTable } from '../../../src/verify/queries.js';

const table: VerifyTable = {
  schema: 'My Schema',
  name: 'Order Items',
  relkind: 'r',
  columns: ['Order Id', 'Line No', 'note'],
  key: [{ name: 'Order Id', type: 'integer', collatable: false }, { name: 'code', type: 'text', collatable: true }],
};

describe('verify queries (pure)', () => {
  it('bounds a chunk by row comparison on the key, text keys compared bytewise, values as typed parameters', () => {
    const p = rangePredicate(table, { lower: ['1', 'a'], upper: ['9', 'z'] });
    expect(p.sql).toBe('(t."Order Id", t."code" COLLATE "C") > ($1::integer, $2::text COLLATE "C") AND (t."Order Id", t."code" COLLATE "C") <= ($3::integer, $4::text COLLATE "C")');
    expect(p.params).toEqual(['1', 'a', '9', 'z']);
    expect(rangePredicate(table, { lower: null, upper: null }).sql).toBe('true');
  });

  it('reads ONLY the table itself (as the copy does) and hashes rows in key order', () => {
    const q = chunkHashQuery(table, { lower: null, upper: ['5', 'k'] });
    expect(q.sql).toContain('FROM ONLY "My Schema"."Order Items" t');
    expect(q.sql).toContain(`string_agg(ROW(t."Order Id", t."Line No", t."note")::text, E'\\n' ORDER BY t."Order Id", t."code" COLLATE "C")`);
    expect(chunkHashQuery({ ...table, relkind: 'p' }, { lower: null, upper: null }).sql).toContain('FROM "My Schema"."Order Items" t');
    expect(nextBoundaryQuery(table, null, 100).sql).toContain('LIMIT 1 OFFSET 99');
  });

  it('names a row by its key', () => {
    expect(describeKey(table, ['7', 'x'])).toBe('("Order Id", "code")=(7, x)');
  });
});
