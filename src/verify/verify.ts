import pg from 'pg';
import { PgferryError, ErrorCodes, PreflightError, describeError } from '../errors.js';
import { connectClient, qualified, tableKey, type TableName } from '../pg/connection.js';
import { parseLsn } from '../protocol/lsn.js';
import { sharesPending } from '../apply/lanes.js';
import { listSourceTables } from '../source/catalog.js';
import { planSchemaCopy } from '../schema/copy-schema.js';
import { chunkHashQuery, describeKey, nextBoundaryQuery, rowHashesQuery, type KeyRange, type VerifyTable } from './queries.js';

/** Same text form of every value on both servers: dates, intervals, floats, bytea, money, time zone. */

export interface VerifyOptions {
  source: pg.ClientConfig;
  target: pg.ClientConfig;
  /** Empty: every table of the source. */
  tables: TableName[];
  /** Rows per chunk (default 10,000). */
  chunkRows?: number;
  /** Differing rows listed per table at most (default 20). */
  maxRows?: number;
  /** The migration's slot: a differing chunk is re-read once the slot is confirmed past the source read. */
  slot?: string;
  /** How long to wait for the target to catch up before re-checking a chunk (default 10 s). */
  catchUpTimeoutMs?: number;
  /** Differing sequences make the result non-identical (after cutover, when sequences are synced). */
  strictSequences?: boolean;
  onProgress?: (message: string) => void;
}

/** One row that differs, by key. */
export interface RowDifference {
  key: string;
  kind: 'missing on target' | 'extra on target' | 'differs';
}

export interface TableResult {
  table: string;
  sourceRows: number;
  targetRows: number;
  chunks: number;
  identical: boolean;
  /** Differing rows, at most `maxRows`; `more` says whether there were others. */
  rows: RowDifference[];
  more: boolean;
  /** A problem that kept the table from being compared (missing on the target, ...). */
  problem: string | null;
}

export interface SequenceResult {
  sequence: string;
  source: string | null;
  target: string | null;
  identical: boolean;
}

export interface VerifyReport {
  identical: boolean;
  tables: TableResult[];
  sequences: SequenceResult[];
  /** Schema objects of the source missing on the target, and objects that differ. */
  schema: { missing: string[]; differing: string[] };
}

/** How many times a differing chunk is read again before the difference counts as persistent. */
const RECHECK_ROUNDS = 5;

interface ChunkRead {
  n: number;
  hash: string;
  lsn: bigint;
}

/**
 * Compares source and target table by table in key-ordered chunks: each side computes a row count
 * and an md5 over the rows' text forms for the same key range, so only hashes travel. A chunk that
 * differs is re-read (once the slot shows that the target has applied past the source read, when a
 * migration is streaming), and only a persistent difference is reported, down to the rows' keys.
 * Also compares sequences and reports schema objects missing or different on the target.
 */
export async function verify(opts: VerifyOptions): Promise<VerifyReport> {
  const source = await connectClient(opts.source, 'source');
  const target = await connectClient(opts.target, 'target').catch(async (err: unknown) => {
    await source.end().catch(() => {});
    throw err;
  });
  try {
    const listed = await listSourceTables(source, opts.tables);
    if (listed.missing.length > 0) throw new PreflightError(`source: table(s) ${listed.missing.map(tableKey).join(', ')} not found; check --tables (names are case-sensitive when quoted)`);
    const tables: TableResult[] = [];
    for (const t of listed.tables) {
      const vt = await describeTable(source, t.oid, t);
      tables.push(await verifyTable(source, target, vt, opts));
    }
    const sequences = await compareSequences(source, target, listed.tables.map((t) => t.oid), opts.tables.length > 0);
    const plan = await planSchemaCopy(source, target, opts.tables);
    const schema = {
      missing: [...plan.preData, ...plan.postData].filter((o) => o.mode === 'create').map((o) => o.label),
      differing: plan.conflicts,
    };
    const identical = tables.every((t) => t.identical) && (!opts.strictSequences || sequences.every((s) => s.identical)) && schema.missing.length === 0 && schema.differing.length === 0;
    return { identical, tables, sequences, schema };
  } finally {
    await source.end().catch(() => {});
    await target.end().catch(() => {});
  }
}


/** Every column (generated ones too) and the key: primary key, else the replica identity index. */
async function describeTable(source: pg.Client, oid: number, t: TableName & { relkind: 'r' | 'p' }): Promise<VerifyTable> {
  const { rows: cols } = await source.query<{ name: string }>(
    `SELECT attname AS name FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [oid],
  );
  const { rows: key } = await source.query<{ name: string; type: string; collatable: boolean }>(
    `WITH i AS (SELECT x.indkey::int2[] AS cols FROM pg_catalog.pg_index x WHERE x.indrelid = $1 AND (x.indisprimary OR x.indisreplident)
                 ORDER BY x.indisprimary DESC LIMIT 1)
     SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attcollation <> 0 AS collatable
       FROM i, unnest(i.cols) WITH ORDINALITY AS k(attnum, pos) JOIN pg_catalog.pg_attribute a ON a.attrelid = $1 AND a.attnum = k.attnum
      ORDER BY k.pos`,
    [oid],
  );
  return { schema: t.schema, name: t.name, relkind: t.relkind, columns: cols.map((c) => c.name), key };
}

async function readChunk(client: pg.Client, t: VerifyTable, range: KeyRange): Promise<ChunkRead> {
  const q = chunkHashQuery(t, range);
  const { rows: [r] } = await client.query<{ n: string; hash: string; lsn: string }>(q.sql, q.params);
  return { n: Number(r!.n), hash: r!.hash, lsn: parseLsn(r!.lsn) };
}

async function verifyTable(source: pg.Client, target: pg.Client, t: VerifyTable, opts: VerifyOptions): Promise<TableResult> {
  const name = tableKey(t);
  const result: TableResult = { table: name, sourceRows: 0, targetRows: 0, chunks: 0, identical: true, rows: [], more: false, problem: null };
  const maxRows = opts.maxRows ?? 20;
  const exists = await target.query<{ ok: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS ok`, [qualified(t)]);
  if (!exists.rows[0]?.ok) return { ...result, identical: false, problem: 'does not exist on the target' };
  const size = Math.max(1, opts.chunkRows ?? 10_000);
  let lower: string[] | null = null;
  for (;;) {
    let upper: string[] | null = null;
    if (t.key.length > 0) {
      const b = nextBoundaryQuery(t, lower, size);
      upper = (await source.query<{ key: string[] }>(b.sql, b.params)).rows[0]?.key ?? null;
    }
    const range: KeyRange = { lower, upper };
    let src: ChunkRead;
    let tgt: ChunkRead;
    try {
      [src, tgt] = await Promise.all([readChunk(source, t, range), readChunk(target, t, range)]);
      // Only a difference that persists is reported. The source may have moved on since the target
      // applied this range: read the source again, wait until the target has applied past that
      // read, read the target at once; a few rounds, since a busy range keeps changing.
      for (let round = 0; round < RECHECK_ROUNDS && opts.slot && (src.n !== tgt.n || src.hash !== tgt.hash); round++) {
        src = await readChunk(source, t, range);
        await waitForTarget(source, target, opts, src.lsn);
        tgt = await readChunk(target, t, range);
      }
    } catch (err) {
      return { ...result, identical: false, problem: describeError(err) };
    }
    result.chunks++;
    result.sourceRows += src.n;
    result.targetRows += tgt.n;
    if (src.n !== tgt.n || src.hash !== tgt.hash) {
      result.identical = false;
      if (result.rows.length < maxRows) {
        const found = await locateRows(source, target, t, range);
        for (const d of found) {
          if (result.rows.length < maxRows) result.rows.push(d);
          else result.more = true;
        }
      } else result.more = true;
    }
    opts.onProgress?.(`${name}: ${result.chunks} chunk(s), ${result.sourceRows} rows compared`);
    if (!upper) break;
    lower = upper;
  }
  return result;
}

/** Lists the rows of one range that differ, by key (rows of a table without key: by content). */
async function locateRows(source: pg.Client, target: pg.Client, t: VerifyTable, range: KeyRange): Promise<RowDifference[]> {
  const q = rowHashesQuery(t, range);
  const read = async (c: pg.Client): Promise<Map<string, string[]>> => {
    const m = new Map<string, string[]>();
    for (const r of (await c.query<{ key: string[]; hash: string }>(q.sql, q.params)).rows) {
      const k = JSON.stringify(r.key);
      m.set(k, [...(m.get(k) ?? []), r.hash].sort());
    }
    return m;
  };
  const [s, d] = await Promise.all([read(source), read(target)]);
  const out: RowDifference[] = [];
  for (const [k, hs] of s) {
    const ht = d.get(k);
    const key = describeKey(t, JSON.parse(k) as string[]);
    if (!ht) out.push({ key, kind: 'missing on target' });
    else if (hs.join() !== ht.join()) out.push({ key, kind: t.key.length > 0 ? 'differs' : hs.length > ht.length ? 'missing on target' : 'extra on target' });
  }
  for (const k of d.keys()) if (!s.has(k)) out.push({ key: describeKey(t, JSON.parse(k) as string[]), kind: 'extra on target' });
  return out;
}

/**
 * Waits (bounded) until the target holds everything the source had at `lsn`: pgferry's progress
 * row on the target (stored with the data, so exact) or the slot's confirmed position (which also
 * moves while the source writes nothing pgferry replicates) is at or past it (and no share of a
 * group up to the progress row is still prepared). Returns at once when
 * no migration is streaming from the slot.
 */
async function waitForTarget(source: pg.Client, target: pg.Client, opts: VerifyOptions, lsn: bigint): Promise<void> {
  if (!opts.slot) return;
  const deadline = Date.now() + (opts.catchUpTimeoutMs ?? 10_000);
  while (Date.now() < deadline) {
    const { rows: [r] } = await source.query<{ lsn: string | null; active: boolean }>(
      `SELECT confirmed_flush_lsn::text AS lsn, active FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`,
      [opts.slot],
    );
    if (!r?.lsn || !r.active || parseLsn(r.lsn) >= lsn) return;
    const applied = await target
      .query<{ lsn: string | null }>(`SELECT applied_lsn::text AS lsn FROM pgferry.migration WHERE slot = $1`, [opts.slot])
      .then((x) => x.rows[0]?.lsn ?? null, () => null);
    // A group spread over several sessions commits its progress row before its prepared shares.
    if (applied && parseLsn(applied) >= lsn && !(await sharesPending(target, opts.slot, parseLsn(applied)))) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Sequences' `last_value` (null: never used) on both sides: every user sequence, or those the selected tables own. */
async function compareSequences(source: pg.Client, target: pg.Client, tableOids: number[], scoped: boolean): Promise<SequenceResult[]> {
  const { rows } = await source.query<{ schema: string; name: string; value: string | null }>(
    `SELECT s.schemaname AS schema, s.sequencename AS name, s.last_value::text AS value FROM pg_catalog.pg_sequences s
      WHERE s.schemaname NOT IN ('pg_catalog', 'information_schema', 'pgferry')
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = format('%I.%I', s.schemaname, s.sequencename)::regclass AND d.deptype = 'e')
        AND (NOT $2 OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = format('%I.%I', s.schemaname, s.sequencename)::regclass
                                 AND d.refobjid = ANY($1::oid[]) AND d.deptype IN ('a', 'i')))
      ORDER BY 1, 2`,
    [tableOids, scoped],
  );
  const out: SequenceResult[] = [];
  for (const r of rows) {
    const { rows: [t] } = await target.query<{ value: string | null; found: boolean }>(
      `SELECT (SELECT last_value::text FROM pg_catalog.pg_sequences WHERE schemaname = $1 AND sequencename = $2) AS value,
              EXISTS (SELECT 1 FROM pg_catalog.pg_sequences WHERE schemaname = $1 AND sequencename = $2) AS found`,
      [r.schema, r.name],
    );
    const targetValue = t?.found ? (t.value ?? null) : 'missing';
    out.push({ sequence: tableKey({ schema: r.schema, name: r.name }), source: r.value, target: targetValue, identical: r.value === targetValue });
  }
  return out;
}
