import type pg from 'pg';
import { ErrorCodes, PgferryError } from '../errors.js';
import { ident } from '../pg/connection.js';

/** What {@link syncSequences} did. */
export interface SequenceSync {
  /** Sequences set on the target to the source's position. */
  advanced: string[];
  /** Sequences already at or past the source's position on the target (left alone: never moved back). */
  ahead: string[];
  /** Source sequences with no counterpart on the target (not migrated, e.g. outside --tables). */
  missing: string[];
}

interface Position {
  last: bigint;
  called: boolean;
  increment: bigint;
}

async function position(client: pg.Client, name: string): Promise<Position> {
  const { rows: [r] } = await client.query<{ last: string; called: boolean; increment: string }>(
    `SELECT s.last_value::text AS last, s.is_called AS called, q.seqincrement::text AS increment FROM ${name} s, pg_sequence q WHERE q.seqrelid = '${name.replace(/'/g, "''")}'::regclass`,
  );
  return { last: BigInt(r!.last), called: r!.called, increment: BigInt(r!.increment) };
}

/** The value the next `nextval` returns, in the sequence's direction. */
function next(p: Position): bigint {
  return p.called ? p.last + p.increment : p.last;
}

/**
 * Sets every sequence of the source database (owned by a serial column, identity, or free-standing)
 * on the target to the source's `last_value`/`is_called`, unless the target's is already further in
 * the sequence's direction: a sequence never moves back. Runs after the fence (read-only sessions
 * cannot call `nextval`), so the source's values are final. The source's `last_value` already
 * covers values cached by its sessions. A target sequence is found by name, else, for a source
 * sequence that feeds a column (serial, identity), as the one that feeds the same column on the
 * target (named differently when the target's schema was made by hand).
 */
export async function syncSequences(source: pg.Client, target: pg.Client): Promise<SequenceSync> {
  const { rows } = await source.query<{ schema: string; name: string; owner: string | null; column: string | null }>(
    `SELECT n.nspname AS schema, c.relname AS name, CASE WHEN t.oid IS NOT NULL THEN format('%I.%I', tn.nspname, t.relname) END AS owner, a.attname AS column
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
       LEFT JOIN pg_class t ON t.oid = d.refobjid
       LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
       LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
      WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry') AND n.nspname NOT LIKE 'pg\\_temp%' AND c.relpersistence = 'p'
      ORDER BY 1, 2`,
  );
  const result: SequenceSync = { advanced: [], ahead: [], missing: [] };
  for (const { schema, name, owner, column } of rows) {
    const src = await position(source, `${ident(schema)}.${ident(name)}`);
    const label = `${schema}.${name}`;
    const q = await counterpart(target, `${ident(schema)}.${ident(name)}`, owner, column);
    if (q === null) {
      result.missing.push(label);
      continue;
    }
    const shown = q === `${ident(schema)}.${ident(name)}` ? label : `${label} (as ${q})`;
    const tgt = await position(target, q);
    if (src.increment !== tgt.increment) {
      throw new PgferryError(ErrorCodes.CUTOVER, `target: sequence ${shown} increments by ${tgt.increment}, the source's by ${src.increment}; ALTER SEQUENCE ${q} INCREMENT BY ${src.increment} on the target, then retry the cutover`);
    }
    const behind = src.increment > 0n ? next(tgt) < next(src) : next(tgt) > next(src);
    if (!behind) {
      result.ahead.push(shown);
      continue;
    }
    await target.query(`SELECT setval($1::regclass, $2::bigint, $3)`, [q, src.last.toString(), src.called]);
    result.advanced.push(shown);
  }
  return result;
}

/**
 * The target sequence for source sequence `q`: for one that feeds a column (`owner`.`column`), the
 * one feeding that column on the target (owned by it, or called by its default); else (or when
 * the target's column has none) the same name. Null: none.
 */
async function counterpart(target: pg.Client, q: string, owner: string | null, column: string | null): Promise<string | null> {
  const byName = async (): Promise<string | null> => ((await target.query<{ ok: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS ok`, [q])).rows[0]?.ok ? q : null);
  // The column first: a sequence of the same name may exist on the target without feeding it.
  if (owner === null || column === null) return byName();
  const { rows: [r] } = await target.query<{ seq: string | null }>(
    `SELECT coalesce(
       CASE WHEN to_regclass($1) IS NOT NULL AND EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped) THEN pg_get_serial_sequence($1, $2) END,
       (SELECT d.refobjid::regclass::text FROM pg_attrdef ad
          JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum AND a.attname = $2
          JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
          JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
         WHERE ad.adrelid = to_regclass($1) LIMIT 1)) AS seq`,
    [owner, column],
  );
  return r?.seq ?? (await byName());
}
