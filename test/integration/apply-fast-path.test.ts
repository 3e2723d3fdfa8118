import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Applier } from '../../src/apply/applier.js';
import { UNCHANGED_TOAST, type PgoutputMessage, type TupleValue } from '../../src/protocol/pgoutput.js';
import { createTestDatabases, type TestDatabases } from '../support/databases.js';
import { captureLogger } from '../support/pgferry.js';

type Relation = Extract<PgoutputMessage, { tag: 'relation' }>;
type RowChange = Extract<PgoutputMessage, { tag: 'insert' | 'update' | 'delete' | 'truncate' }>;
/** The applier's path for a change that may wait; `change` takes its common cases without a promise. */
type Waiting = { changeWaiting(msg: RowChange): Promise<void> };

const relation = (relationOid: number, name: string, replicaIdentity: 'default' | 'full', columns: [string, boolean][]): Relation => ({
  tag: 'relation',
  relationOid,
  namespace: 'public',
  name,
  replicaIdentity,
  columns: columns.map(([n, isKey]) => ({ name: n, typeOid: n === 'v' ? 25 : 23, typeModifier: -1, isKey })),
});
const insert = (relationOid: number, newTuple: TupleValue[]): RowChange => ({ tag: 'insert', relationOid, newTuple });
const update = (relationOid: number, newTuple: TupleValue[], old: { kind: 'key' | 'full'; tuple: TupleValue[] } | null = null): RowChange => ({
  tag: 'update',
  relationOid,
  oldKind: old?.kind ?? null,
  oldTuple: old?.tuple ?? null,
  newTuple,
});
const del = (relationOid: number, kind: 'key' | 'full', oldTuple: TupleValue[]): RowChange => ({ tag: 'delete', relationOid, oldKind: kind, oldTuple });

/**
 * `Applier.change` applies the common changes without a promise, deciding by itself what
 * `changeWaiting` would (see there). Every shape either path sees: the same changes through each
 * must send the target the very same statements, in the same order, and leave the same rows.
 */
describe('a change applied without waiting takes the path a waiting one would', () => {
  let db: TestDatabases;
  const lines: string[] = [];
  const TABLES = ['fp_keyed', 'fp_full', 'fp_identity', 'fp_key_only'];
  const relations = [
    relation(1, 'fp_keyed', 'default', [['id', true], ['v', false], ['n', false]]),
    relation(2, 'fp_full', 'full', [['id', false], ['v', false]]),
    relation(3, 'fp_identity', 'default', [['id', true], ['v', false]]),
    relation(4, 'fp_key_only', 'default', [['a', true], ['b', true]]),
  ];
  const changes: RowChange[] = [];
  for (let i = 1; i <= 300; i++) changes.push(insert(1, [String(i), `v${i}`, String(i)]));
  for (let i = 1; i <= 50; i++) changes.push(update(1, [String(i), `u${i}`, String(2 * i)])); // rows still in the insert run
  changes.push(insert(1, ['301', 'after', '0'])); // the updates above closed the run: a new one
  for (let i = 51; i <= 60; i++) changes.push(update(1, [String(i), UNCHANGED_TOAST, '7']));
  for (let i = 61; i <= 65; i++) changes.push(update(1, [String(i + 1000), 'moved', '0'], { kind: 'key', tuple: [String(i), null, null] }));
  for (let i = 66; i <= 80; i++) changes.push(del(1, 'key', [String(i), null, null]));
  changes.push(del(1, 'full', ['150', 'v150', '150'])); // a whole old row, though the relation has a key
  changes.push(update(1, ['90', 'a', '1']), update(1, ['90', 'b', '2']), update(1, ['91', null, '3']));
  changes.push(del(1, 'key', ['100', null, null]), insert(1, ['100', 'again', '1']), update(1, ['100', 'again and again', '2']));
  changes.push(insert(2, ['1', 'a']), insert(2, ['2', 'b']), insert(2, ['2', 'b']), update(2, ['2', 'c'], { kind: 'full', tuple: ['2', 'b'] }), del(2, 'full', ['1', 'a']));
  changes.push(insert(3, ['1', 'x']), insert(3, ['2', 'y']), update(3, ['1', 'z']), del(3, 'key', ['2', null]));
  changes.push(insert(4, ['1', '1']), insert(4, ['1', '2']), update(4, ['1', '1']), del(4, 'key', ['1', '2']));
  for (let i = 200; i <= 239; i++) changes.push(update(1, [String(i), `late${i}`, String(i)]), del(1, 'key', [String(i + 60), null, null]));

  beforeAll(async () => {
    db = await createTestDatabases('fastpath');
    await db.target.query(`CREATE TABLE fp_keyed (id int PRIMARY KEY, v text, n int); CREATE TABLE fp_full (id int, v text);
      CREATE TABLE fp_identity (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text); CREATE TABLE fp_key_only (a int, b int, PRIMARY KEY (a, b))`);
  });

  afterAll(async () => {
    await db?.drop();
  });

  /** Applies every change through `via` in one target transaction, rolled back; returns what was sent and the rows it left. */
  const apply = async (via: 'change' | 'changeWaiting'): Promise<{ sent: string[]; rows: unknown[][] }> => {
    const client = new pg.Client({ connectionString: db.targetUrl });
    await client.connect();
    const sent: string[] = [];
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args) => {
      sent.push(typeof args[0] === 'string' ? args[0] : (args[0] as { text: string }).text);
      return query(...args);
    };
    try {
      const applier = new Applier(client, db.slot, captureLogger(lines, 'warn'));
      await applier.init();
      for (const r of relations) applier.relation(r);
      for (const c of changes) {
        const waiting = via === 'change' ? applier.change(c) : (applier as unknown as Waiting).changeWaiting(c);
        if (waiting) await waiting;
      }
      await applier.flush();
      const rows: unknown[][] = [];
      for (const t of TABLES) rows.push((await client.query(`SELECT * FROM ${t} ORDER BY 1, 2`)).rows);
      await applier.rollback();
      return { sent, rows };
    } finally {
      await client.end();
    }
  };

  it('sends the same statements and leaves the same rows for every shape of change', async () => {
    const fast = await apply('change');
    const waiting = await apply('changeWaiting');
    expect(fast.sent).toEqual(waiting.sent);
    expect(fast.rows).toEqual(waiting.rows);
    // Every kind of statement was there to compare: a COPY run, keyed batches, single statements.
    expect(fast.sent.some((s) => s.startsWith('COPY '))).toBe(true);
    expect(fast.sent.some((s) => /UPDATE [^;]* FROM \(SELECT /.test(s))).toBe(true);
    expect(fast.sent.some((s) => /DELETE FROM [^;]* USING \(SELECT /.test(s))).toBe(true);
    expect(fast.rows.map((r) => r.length)).toEqual([301 - 16 - 40, 2, 1, 1]);
    expect(fast.rows[0]).toContainEqual({ id: 100, v: 'again and again', n: 2 });
    expect(fast.rows[0]).toContainEqual({ id: 1061, v: 'moved', n: 0 });
  });
});
