import { describe, expect, it } from 'vitest';
import { decodeDdlMessage, leadingWords, planDdl, splitStatements, type DdlPayload } from '../../../src/ddl/ddl-message.js';

function payload(p: Partial<DdlPayload>): DdlPayload {
  return { publication: 'pub', tag: 'ALTER TABLE', query: '', searchPath: ['public'], commands: [], tables: [], enums: [], droppedTables: [], ...p };
}

describe('splitStatements', () => {
  it('splits at top-level semicolons only', () => {
    expect(splitStatements(`BEGIN; INSERT INTO t VALUES ('a;b', "x;y"); ALTER TABLE t ADD c int;COMMIT;`)).toEqual([
      'BEGIN',
      `INSERT INTO t VALUES ('a;b', "x;y")`,
      'ALTER TABLE t ADD c int',
      'COMMIT',
    ]);
  });

  it('honours doubled quotes, E-string escapes, dollar quoting and comments', () => {
    const sql = `SELECT 'it''s;'; SELECT E'\\';'; DO $x$ BEGIN PERFORM 1; END $x$; SELECT $$;$$; -- a; comment
/* block /* nested; */ still; */ ALTER TABLE t ADD c int`;
    expect(splitStatements(sql)).toEqual([
      `SELECT 'it''s;'`,
      `SELECT E'\\';'`,
      'DO $x$ BEGIN PERFORM 1; END $x$',
      'SELECT $$;$$',
      `-- a; comment\n/* block /* nested; */ still; */ ALTER TABLE t ADD c int`,
    ]);
  });

  it('drops empty statements and comment-only tails', () => {
    expect(splitStatements(' ; ALTER TABLE t ADD c int ;; -- done\n')).toEqual(['ALTER TABLE t ADD c int']);
  });

  it('does not take $1 parameters or identifiers with $ for dollar quotes', () => {
    expect(splitStatements('SELECT $1; SELECT a$b$c FROM t')).toEqual(['SELECT $1', 'SELECT a$b$c FROM t']);
  });
});

describe('leadingWords', () => {
  it('skips comments and upper-cases', () => {
    expect(leadingWords('/* x */ -- y\n alter\n  table t', 2)).toBe('ALTER TABLE');
  });
});

describe('planDdl', () => {
  it('replays the one statement of the query string that has the fired tag', () => {
    const p = payload({ query: `BEGIN; INSERT INTO t VALUES (1); ALTER TABLE t ADD c int; COMMIT` });
    expect(planDdl(p)).toEqual({ kind: 'execute', statements: ['ALTER TABLE t ADD c int'] });
  });

  it('refuses a statement that ran inside a function or DO block, and ambiguous query strings', () => {
    expect(planDdl(payload({ query: `DO $$ BEGIN ALTER TABLE t ADD c int; END $$` }))).toMatchObject({ kind: 'unsupported' });
    expect(planDdl(payload({ query: `ALTER TABLE t ADD c int; ALTER TABLE t ADD d int` }))).toEqual({ kind: 'unsupported', reason: 'the query string holds 2 ALTER TABLE statements' });
  });

  it('rebuilds CREATE INDEX from its definition, idempotently, and DROP INDEX from the identity', () => {
    const create = payload({ tag: 'CREATE INDEX', query: 'create index concurrently i on t (v)', commands: [{ tag: 'CREATE INDEX', type: 'index', identity: 'public.i', indexdef: 'CREATE UNIQUE INDEX i ON public.t USING btree (v)' }] });
    expect(planDdl(create)).toEqual({ kind: 'execute', statements: ['CREATE UNIQUE INDEX IF NOT EXISTS i ON public.t USING btree (v)'] });
    const drop = payload({ tag: 'DROP INDEX', query: 'DROP INDEX i, j', commands: [{ tag: 'DROP INDEX', type: 'index', identity: 'public.i' }, { tag: 'DROP INDEX', type: 'index', identity: '"S".j' }] });
    expect(planDdl(drop)).toEqual({ kind: 'execute', statements: ['DROP INDEX IF EXISTS public.i', 'DROP INDEX IF EXISTS "S".j'] });
  });

  it('marks other statements and objects the source refused as unsupported', () => {
    expect(planDdl(payload({ tag: 'DROP TABLE', query: 'DROP TABLE t' }))).toEqual({ kind: 'unsupported', reason: 'DROP TABLE is not applied by pgferry' });
    expect(planDdl(payload({ tag: 'CREATE TABLE', query: 'CREATE TABLE n (v int)', commands: [{ tag: 'CREATE TABLE', type: 'table', identity: 'public.n', unsupported: 'no key' }] }))).toEqual({ kind: 'unsupported', reason: 'public.n: no key' });
  });
});

describe('decodeDdlMessage', () => {
  const content = (o: unknown) => Buffer.from(JSON.stringify(o));

  it('keeps messages of this publication only', () => {
    const p = { publication: 'pub', tag: 'ALTER TABLE', query: 'ALTER TABLE t ADD c int', searchPath: ['public'], commands: [] };
    expect(decodeDdlMessage(content(p), 'pub')).toMatchObject({ tag: 'ALTER TABLE', tables: [], enums: [], droppedTables: [] });
    expect(decodeDdlMessage(content(p), 'other')).toBeNull();
  });

  it('rejects a malformed message instead of skipping it', () => {
    expect(() => decodeDdlMessage(Buffer.from('not json'), 'pub')).toThrow(/malformed pgferry.ddl message/);
    expect(() => decodeDdlMessage(content({ publication: 'pub' }), 'pub')).toThrow(/malformed/);
  });
});
