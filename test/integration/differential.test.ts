import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { rowCount } from '../support/compare.js';
import { waitForNoDifferences } from '../support/converge.js';
import { createTestDatabases, type TestDatabases } from '../support/databases.js';
import { startInProcess } from '../support/pgferry.js';
import { seededRandom, type Random } from '../support/random.js';
import { untilStreaming } from '../support/streaming.js';
import { availableExtensions, bigText, typeColumns, typeSetup, type TypeColumn } from '../support/type-catalog.js';

/**
 * Randomized differential test: random tables over many types, random transactions (inserts,
 * updates with key changes and TOASTed values, deletes, truncates) on the source while pgferry
 * copies and streams; then every value must be identical on the target.
 * Replay or lengthen: PGFERRY_TEST_SEED=<n> PGFERRY_TEST_SCALE=<k> npx vitest run test/integration/differential.test.ts
 */
const SEED = Number(process.env['PGFERRY_TEST_SEED'] ?? 20260917);
const SCALE = Math.max(1, Number(process.env['PGFERRY_TEST_SCALE'] ?? 1));
const REPLAY = `seed ${SEED}, scale ${SCALE} (replay: PGFERRY_TEST_SEED=${SEED} PGFERRY_TEST_SCALE=${SCALE})`;

/** Types the random tables draw from (a subset of the type catalog, with the extension types when available). */
const POOL = ['i2', 'i8', 'num', 'num_s', 'f4', 'f8', 'm', 't', 'vc', 'ch', 'by', 'bo', 'd', 'tm', 'tmtz', 'ts', 'tstz', 'iv', 'u', 'j', 'jb', 'x', 'ip', 'mac', 'b5', 'vb', 'tsv', 'pt', 'bx', 'r4', 'rtstz', 'mr4', 'a_i', 'a_t', 'a_tstz', 'a_f', 'e', 'dom', 'comp', 'cit', 'hs'];

type KeyKind = 'int' | 'composite' | 'uuid' | 'full';

interface RandomTable {
  name: string;
  keyKind: KeyKind;
  columns: TypeColumn[];
  /** Live keys (SQL literals of the key columns) for keyed tables, in insertion order. */
  keys: string[][];
  nextKey: number;
}

function keyColumns(t: RandomTable): string[] {
  return t.keyKind === 'int' ? ['id'] : t.keyKind === 'composite' ? ['k1', 'k2'] : t.keyKind === 'uuid' ? ['uid'] : [];
}

function newKey(t: RandomTable, rnd: Random): string[] {
  const n = t.nextKey++;
  if (t.keyKind === 'int') return [String(n)];
  if (t.keyKind === 'composite') return [String(n % 7), `'k${n}${rnd.pick(['', ' ', "''", '\\', ',', 'é'])}'`];
  return [`'${n.toString(16).padStart(8, '0')}-0000-4000-8000-${rnd.int(0, 0xffffff).toString(16).padStart(12, '0')}'`];
}

/** A random value of a column: a catalog edge value, a fresh random one, or NULL. */
function value(col: TypeColumn, rnd: Random, seq: number): string {
  if (rnd.chance(0.1)) return 'NULL';
  if (col.name === 't' && rnd.chance(0.5)) return `'r${rnd.int(0, 1e6)} ${rnd.pick(['\t', '\n', '\\', "''", '"', ',', ' '])}x'`;
  if (col.name === 'i8' && rnd.chance(0.5)) return `'${rnd.int(-1e9, 1e9)}'`;
  if (col.name === 'num' && rnd.chance(0.5)) return `'${rnd.int(-1e6, 1e6)}.${rnd.int(0, 999)}0'`;
  if (col.name === 'f8' && rnd.chance(0.5)) return `'${rnd.next() * 10 ** rnd.int(-30, 30)}'`;
  return `${rnd.pick(col.values)}::${col.type}`;
}

function docValue(rnd: Random, seq: number): string {
  return rnd.chance(0.4) ? bigText(seq, rnd.int(70, 400)) : rnd.chance(0.1) ? 'NULL' : `'small ${seq}'`;
}

function createTableSql(t: RandomTable): string {
  const keyDefs = t.keyKind === 'int' ? ['id integer'] : t.keyKind === 'composite' ? ['k1 integer', 'k2 text'] : t.keyKind === 'uuid' ? ['uid uuid'] : ['tag integer'];
  const cols = [...keyDefs, 'doc text', ...t.columns.map((c) => `${c.name} ${c.type}`)];
  const pk = t.keyKind === 'full' ? '' : `, PRIMARY KEY (${keyColumns(t).join(', ')})`;
  const full = t.keyKind === 'full' ? `; ALTER TABLE public.${t.name} REPLICA IDENTITY FULL` : '';
  return `CREATE TABLE public.${t.name} (${cols.join(', ')}${pk})${full}`;
}

function insertSql(t: RandomTable, rnd: Random, rows: number, seq: () => number): string {
  const tuples: string[] = [];
  for (let i = 0; i < rows; i++) {
    const s = seq();
    const key = t.keyKind === 'full' ? [String(rnd.int(0, 9))] : newKey(t, rnd);
    if (t.keyKind !== 'full') t.keys.push(key);
    tuples.push(`(${[...key, docValue(rnd, s), ...t.columns.map((c) => value(c, rnd, s))].join(', ')})`);
  }
  const names = [...(t.keyKind === 'full' ? ['tag'] : keyColumns(t)), 'doc', ...t.columns.map((c) => c.name)];
  return `INSERT INTO public.${t.name} (${names.join(', ')}) VALUES ${tuples.join(', ')}`;
}

function whereKey(t: RandomTable, key: string[]): string {
  return keyColumns(t).map((k, i) => `${k} = ${key[i]}`).join(' AND ');
}

/** The row an update or delete of a keyless (FULL) table touches: one physical row with a tag, if any. */
function oneTagged(t: RandomTable, rnd: Random): string {
  return `ctid = (SELECT ctid FROM public.${t.name} WHERE tag = ${rnd.int(0, 9)} ORDER BY ctid LIMIT 1)`;
}

/** One random statement (or a run of them) against `t`; keeps the key model in step. */
function randomStatements(t: RandomTable, rnd: Random, seq: () => number): string[] {
  const roll = rnd.next();
  if (roll < 0.3 || (t.keyKind !== 'full' && t.keys.length === 0)) return [insertSql(t, rnd, rnd.chance(0.2) ? rnd.int(8, 40) : rnd.int(1, 4), seq)];
  const setCols = rnd.sample(t.columns, rnd.int(1, Math.min(3, t.columns.length)));
  const touchDoc = rnd.chance(0.3);
  const assignments = (): string => {
    const s = seq();
    return [...setCols.map((c) => `${c.name} = ${value(c, rnd, s)}`), ...(touchDoc ? [`doc = ${docValue(rnd, s)}`] : [])].join(', ');
  };
  if (t.keyKind === 'full') {
    if (roll < 0.75) return Array.from({ length: rnd.int(1, 4) }, () => `UPDATE public.${t.name} SET ${assignments()} WHERE ${oneTagged(t, rnd)}`);
    if (roll < 0.98) return [`DELETE FROM public.${t.name} WHERE ${oneTagged(t, rnd)}`];
    return [`TRUNCATE public.${t.name}`];
  }
  if (roll < 0.65) {
    // A run of updates by distinct keys, same columns: the set-based path.
    const keys = rnd.sample(t.keys, rnd.int(1, Math.min(12, t.keys.length)));
    return keys.map((k) => `UPDATE public.${t.name} SET ${assignments()} WHERE ${whereKey(t, k)}`);
  }
  if (roll < 0.75) {
    // Key change (the row keeps its TOASTed doc unless assigned).
    const i = rnd.int(0, t.keys.length - 1);
    const old = t.keys[i]!;
    const fresh = newKey(t, rnd);
    t.keys[i] = fresh;
    const set = keyColumns(t).map((k, n) => `${k} = ${fresh[n]}`);
    return [`UPDATE public.${t.name} SET ${[...set, ...(rnd.chance(0.5) ? [assignments()] : [])].join(', ')} WHERE ${whereKey(t, old)}`];
  }
  if (roll < 0.97) {
    const victims = rnd.sample(t.keys, rnd.int(1, Math.min(6, t.keys.length)));
    const gone = new Set(victims);
    t.keys = t.keys.filter((k) => !gone.has(k));
    return victims.map((k) => `DELETE FROM public.${t.name} WHERE ${whereKey(t, k)}`);
  }
  t.keys = [];
  return [`TRUNCATE public.${t.name}`];
}

describe(`randomized differential replication (${REPLAY})`, () => {
  let db: TestDatabases;
  let app: App | undefined;
  let tables: RandomTable[] = [];
  const rnd = seededRandom(SEED);
  let counter = 0;
  const seq = (): number => ++counter;

  beforeAll(async () => {
    db = await createTestDatabases('diff');
    const ext = await availableExtensions([db.source, db.target]);
    const pool = typeColumns(ext).filter((c) => POOL.includes(c.name));
    const kinds: KeyKind[] = ['int', 'composite', 'uuid', 'full'];
    const n = rnd.int(3, 5);
    tables = Array.from({ length: n }, (_, i) => ({
      name: `rt${i}`,
      keyKind: i < kinds.length ? kinds[i]! : rnd.pick(kinds),
      columns: rnd.sample(pool, rnd.int(4, 12)),
      keys: [],
      nextKey: 1,
    }));
    await db.source.query(typeSetup(ext));
    for (const t of tables) {
      await db.source.query(createTableSql(t));
      await db.source.query(insertSql(t, rnd, 30 * SCALE, seq));
    }
  });

  afterAll(async () => {
    await app?.stop();
    await db?.drop();
  });

  it('ends with identical values on both sides', async () => {
    const schema = tables.map(createTableSql).join(';\n');
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot });
    // Transactions start at once: the first ones race the initial copy (snapshot and stream must meet exactly).
    const transactions = 80 * SCALE;
    let statements = 0;
    for (let i = 0; i < transactions; i++) {
      const batch: string[] = [];
      for (let k = rnd.int(1, 6); k > 0; k--) batch.push(...randomStatements(rnd.pick(tables), rnd, seq));
      statements += batch.length;
      await db.source.query('BEGIN');
      try {
        for (const s of batch) await db.source.query(s);
      } catch (err) {
        // A TRUNCATE can deadlock with the copy's ACCESS SHARE locks; PostgreSQL may pick this side as the victim.
        // The key model tolerates a lost transaction (as it does a ROLLBACK). Anything else is a test bug.
        if ((err as { code?: string }).code !== '40P01') throw new Error(`${REPLAY}: the generated workload failed on the source (a test bug): ${(err as Error).message}`);
        await db.source.query('ROLLBACK');
        continue;
      }
      await db.source.query(rnd.chance(0.05) ? 'ROLLBACK' : 'COMMIT');
      if (i === Math.floor(transactions / 2)) await untilStreaming(app, 60_000, `${REPLAY}: `);
    }
    const names = tables.map((t) => `public.${t.name}`);
    const keys = Object.fromEntries(tables.filter((t) => t.keyKind !== 'full').map((t) => [`public.${t.name}`, keyColumns(t)]));
    await waitForNoDifferences(db.source, db.target, names, {
      keys,
      timeoutMs: 45_000,
      context: () => `${REPLAY}\n${statements} statements in ${transactions} transactions; pgferry phase ${app!.status.phase}, last error: ${app!.status.lastError ?? 'none'}\nschema:\n${schema}`,
    });
    let rows = 0;
    for (const t of names) rows += await rowCount(db.target, t);
    expect(rows, REPLAY).toBeGreaterThan(0);
    expect(app.status.phase, REPLAY).toBe('streaming');
  });
});

