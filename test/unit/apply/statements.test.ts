import { describe, expect, it } from 'vitest';
import { copyTextLine, deleteByKeysStatement, deleteStatement, inlineParams, insertRowsStatement, updateByKeysStatement, insertStatement, matchStatement, truncateStatement, updateStatement, type RelationPlan, type Statement } from '../../../src/apply/statements.js';

/** Mixed case, spaces and embedded double quotes everywhere a name appears. */
const plan: RelationPlan = {
  table: { schema: 'My Schema', name: 'Or"ders' },
  key: 'My Schema.Or"ders',
  all: [0, 1, 2],
  nonKey: [1, 2],
  only: false,
  columns: ['Id', 'first name', 'x"y'],
  types: ['integer', 'text', 'jsonb'],
  baseTypes: ['"pg_catalog"."int4"', '"pg_catalog"."text"', '"pg_catalog"."jsonb"'],
  keyIndexes: [0],
  alwaysIdentity: [],
};
const TABLE = '"My Schema"."Or""ders"';

/**
 * Resolves a statement's parameters the way the applier does (non-negative: new tuple index,
 * negative: -1 - old tuple index) and checks that $1..$n are exactly the parameters used.
 */
function bind(stmt: Statement, newTuple: string[], oldTuple: string[]): string[] {
  const used = new Set([...stmt.sql.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])));
  expect([...used].sort((a, b) => a - b)).toEqual(stmt.params.map((_, n) => n + 1));
  return stmt.params.map((p) => (p >= 0 ? newTuple[p]! : oldTuple[-1 - p]!));
}

describe('insertRowsStatement', () => {
  it('inserts many rows as untyped literals, quotes doubled, NULL unquoted, backslashes kept', () => {
    expect(insertRowsStatement(plan, [0, 1], [['1', "O'Brien"], ['2', null], ['3', 'a\\b']])).toBe(
      `INSERT INTO ${TABLE} ("Id", "first name") VALUES ('1', 'O''Brien'), ('2', NULL), ('3', 'a\\b')`,
    );
  });

  it('says OVERRIDING SYSTEM VALUE when the plan asks for it', () => {
    expect(insertRowsStatement({ ...plan, alwaysIdentity: [0] }, [0], [['1']])).toBe(`INSERT INTO ${TABLE} ("Id") OVERRIDING SYSTEM VALUE VALUES ('1')`);
  });
});

describe('insertStatement', () => {
  it('inserts the present columns, quoting every name', () => {
    const stmt = insertStatement(plan, [0, 1, 2]);
    expect(stmt.sql).toBe(`INSERT INTO ${TABLE} ("Id", "first name", "x""y") VALUES ($1, $2, $3)`);
    expect(stmt.params).toEqual([0, 1, 2]);
  });

  it('leaves out columns that are not present and takes values from the new tuple', () => {
    const stmt = insertStatement(plan, [0, 2]);
    expect(stmt.sql).toBe(`INSERT INTO ${TABLE} ("Id", "x""y") VALUES ($1, $2)`);
    expect(bind(stmt, ['1', 'n', '{}'], [])).toEqual(['1', '{}']);
  });

  it('says OVERRIDING SYSTEM VALUE only when the plan asks for it', () => {
    expect(insertStatement(plan, [0]).sql).not.toContain('OVERRIDING');
    const stmt = insertStatement({ ...plan, alwaysIdentity: [0] }, [0, 1]);
    expect(stmt.sql).toBe(`INSERT INTO ${TABLE} ("Id", "first name") OVERRIDING SYSTEM VALUE VALUES ($1, $2)`);
  });

  it('quotes lower-case names too, so keywords are safe', () => {
    const stmt = insertStatement({ ...plan, table: { schema: 'public', name: 'order' }, columns: ['select'] }, [0]);
    expect(stmt.sql).toBe('INSERT INTO "public"."order" ("select") VALUES ($1)');
  });
});

describe('updateStatement by key', () => {
  it('numbers the SET parameters first, then the key parameters from the old tuple', () => {
    const stmt = updateStatement(plan, [1, 2], [0], false);
    expect(stmt.sql).toBe(`UPDATE ${TABLE} AS t SET "first name" = $1, "x""y" = $2 WHERE t."Id" = $3`);
    expect(stmt.params).toEqual([1, 2, -1]);
    expect(bind(stmt, ['7', 'new name', '{"a":1}'], ['6', 'old name', '{}'])).toEqual(['new name', '{"a":1}', '6']);
  });

  it('matches a changed key by its old value while setting the new one', () => {
    const stmt = updateStatement(plan, [0, 1], [0], false);
    expect(stmt.sql).toBe(`UPDATE ${TABLE} AS t SET "Id" = $1, "first name" = $2 WHERE t."Id" = $3`);
    expect(bind(stmt, ['2', 'n', '{}'], ['1', 'n', '{}'])).toEqual(['2', 'n', '1']);
  });

  it('joins a multi-column key with AND', () => {
    const stmt = updateStatement({ ...plan, keyIndexes: [0, 2] }, [1], [0, 2], false);
    expect(stmt.sql).toBe(`UPDATE ${TABLE} AS t SET "first name" = $1 WHERE t."Id" = $2 AND t."x""y" = $3`);
    expect(stmt.params).toEqual([1, -1, -3]);
  });
});

describe('deleteStatement by key', () => {
  it('matches the key from the old tuple, numbering from $1', () => {
    const stmt = deleteStatement(plan, [0], false);
    expect(stmt.sql).toBe(`DELETE FROM ${TABLE} AS t WHERE t."Id" = $1`);
    expect(stmt.params).toEqual([-1]);
    expect(bind(stmt, [], ['42', 'x', '{}'])).toEqual(['42']);
  });
});

describe('full replica identity', () => {
  /** `head` on one row matching `cond`: an unlocked one first, else waiting for one. */
  const pinOne = (cond: string, head: string): string =>
    `WITH pgferry_free AS (SELECT m.tableoid, m.ctid FROM ${TABLE} AS m WHERE ${cond} LIMIT 1 FOR UPDATE SKIP LOCKED), ` +
    `pgferry_any AS (SELECT m.tableoid, m.ctid FROM ${TABLE} AS m WHERE ${cond} AND NOT EXISTS (SELECT FROM pgferry_free) LIMIT 1 FOR UPDATE) ` +
    `${head} WHERE (t.tableoid, t.ctid) = (SELECT * FROM pgferry_free UNION ALL SELECT * FROM pgferry_any LIMIT 1)`;
  const all =
    'm."Id"::text IS NOT DISTINCT FROM ($2::integer)::text AND ' +
    'm."first name"::text IS NOT DISTINCT FROM ($3::text)::text AND ' +
    'm."x""y"::text IS NOT DISTINCT FROM ($4::jsonb)::text';

  it('updates exactly one row matched on the text form of every old column', () => {
    const stmt = updateStatement(plan, [1], [0, 1, 2], true);
    expect(stmt.sql).toBe(pinOne(all, `UPDATE ${TABLE} AS t SET "first name" = $1`));
    expect(stmt.params).toEqual([1, -1, -2, -3]);
    expect(bind(stmt, ['1', 'new', '{}'], ['1', 'old', '{ }'])).toEqual(['new', '1', 'old', '{ }']);
  });

  it('deletes exactly one row, numbering from $1', () => {
    const stmt = deleteStatement(plan, [0, 2], true);
    expect(stmt.sql).toBe(pinOne('m."Id"::text IS NOT DISTINCT FROM ($1::integer)::text AND m."x""y"::text IS NOT DISTINCT FROM ($2::jsonb)::text', `DELETE FROM ${TABLE} AS t`));
    expect(stmt.params).toEqual([-1, -3]);
  });

  it('matches any one row when no column can be compared', () => {
    const del = deleteStatement(plan, [], true);
    expect(del.sql).toBe(pinOne('true', `DELETE FROM ${TABLE} AS t`));
    expect(del.params).toEqual([]);
    const upd = updateStatement(plan, [2], [], true);
    expect(upd.sql).toBe(pinOne('true', `UPDATE ${TABLE} AS t SET "x""y" = $1`));
    expect(upd.params).toEqual([2]);
  });
});

describe('ordinary tables with inheritance children', () => {
  const ordinary: RelationPlan = { ...plan, only: true };

  it('say ONLY in UPDATE, DELETE, the FULL match subquery and TRUNCATE, so children are never touched', () => {
    expect(updateStatement(ordinary, [1], [0], false).sql).toBe(`UPDATE ONLY ${TABLE} AS t SET "first name" = $1 WHERE t."Id" = $2`);
    expect(deleteStatement(ordinary, [0], false).sql).toBe(`DELETE FROM ONLY ${TABLE} AS t WHERE t."Id" = $1`);
    expect(deleteStatement(ordinary, [1], true).sql).toContain(`FROM ONLY ${TABLE} AS m WHERE`);
    expect(truncateStatement([ordinary, { ...plan, table: { schema: 'public', name: 'p' } }], true)).toBe(
      `TRUNCATE ONLY ${TABLE}, "public"."p" RESTART IDENTITY`,
    );
  });

  it('never cascade a TRUNCATE', () => {
    expect(truncateStatement([ordinary], false)).toBe(`TRUNCATE ONLY ${TABLE}`);
  });
});

describe('matchStatement (an update with nothing to assign)', () => {
  it('locks exactly the row the update would change, guards included', () => {
    const stmt = matchStatement(plan, [0], false, [2]);
    expect(stmt.sql).toBe(`SELECT 1 FROM ${TABLE} AS t WHERE t."Id" = $1 AND t."x""y" = $2 FOR UPDATE`);
    expect(bind(stmt, ['7', 'n', '{}'], ['6', 'o', '{"o":1}'])).toEqual(['6', '{}']);
  });
});

describe('inlineParams (statement batches in one round trip)', () => {
  it('inlines values as untyped literals, doubling quotes and keeping backslashes', () => {
    expect(inlineParams(`UPDATE t SET a = $1, b = $2 WHERE k = $3`, [`it's`, null, 'C:\\dir\\n'])).toBe(
      `UPDATE t SET a = 'it''s', b = NULL WHERE k = 'C:\\dir\\n'`,
    );
  });

  it('leaves $n inside quoted identifiers alone and handles $10 and beyond', () => {
    const values = Array.from({ length: 11 }, (_, i) => `v${i + 1}`);
    expect(inlineParams(`SELECT "a$1""$2" = $1, $10, $11`, values)).toBe(`SELECT "a$1""$2" = 'v1', 'v10', 'v11'`);
  });

  it('refuses a placeholder without a value', () => {
    expect(() => inlineParams('SELECT $2', ['x'])).toThrow(RangeError);
  });
});

describe('copyTextLine', () => {
  it('escapes only what COPY text format treats specially', () => {
    expect(copyTextLine(['a\tb', null, 'line\nbreak\r', 'back\\slash', '\\N', '', "q'uote"])).toBe(
      'a\\tb\t\\N\tline\\nbreak\\r\tback\\\\slash\t\\\\N\t\tq\'uote\n',
    );
  });
});

describe('set-based statements for runs of changes by key', () => {
  it('update many rows in one statement: one text array per column, each element cast to the unmodified base type', () => {
    const sql = updateByKeysStatement({ ...plan, only: true }, [1, 2], [
      ['1', "O'Brien", null],
      ['2', 'x', String.raw`{"a": "b\c"}`],
      ['3', 'NULL', ''],
    ]);
    expect(sql).toBe(
      `UPDATE ONLY ${TABLE} AS t SET "first name" = v."first name", "x""y" = v."x""y" FROM (SELECT u.c0::"pg_catalog"."int4" AS "Id", u.c1::"pg_catalog"."text" AS "first name", u.c2::"pg_catalog"."jsonb" AS "x""y" ` +
        `FROM unnest(string_to_array('1\x1f2\x1f3', E'\\x1f', E'\\x1e'), string_to_array('O''Brien\x1fx\x1fNULL', E'\\x1f', E'\\x1e'), ` +
        String.raw`string_to_array('` + '\x1e\x1f' + String.raw`{"a": "b\c"}` + '\x1f' + String.raw`', E'\x1f', E'\x1e')) AS u (c0, c1, c2)) AS v ` +
        `WHERE t."Id" = v."Id"`,
    );
  });

  it('falls back to a quoted array literal for a value holding a separator, or a lone empty value', () => {
    const sql = updateByKeysStatement(plan, [1], [
      ['1', 'a\x1fb'],
      ['2', null],
    ]);
    expect(sql).toContain(`string_to_array('1\x1f2', E'\\x1f', E'\\x1e'), '{"a\x1fb",NULL}'::text[]`);
    expect(deleteByKeysStatement(plan, [['']])).toContain(`unnest('{""}'::text[])`);
    const marked = updateByKeysStatement(plan, [1], [
      ['1', 'a\x1eb'],
      ['2', 'c'],
    ]);
    expect(marked).toContain(`'{"a\x1eb","c"}'::text[]`);
  });

  it('delete many rows by key in one statement', () => {
    expect(deleteByKeysStatement(plan, [['1'], ['2']])).toBe(
      `DELETE FROM ${TABLE} AS t USING (SELECT u.c0::"pg_catalog"."int4" AS "Id" FROM unnest(string_to_array('1\x1f2', E'\\x1f', E'\\x1e')) AS u (c0)) AS v WHERE t."Id" = v."Id"`,
    );
  });
});
