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
 * covers values cached by its sessions.
 */
export async function syncSequences(source: pg.Client, target: pg.Client): Promise<SequenceSync> {
  const { rows } = await source.query<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry') AND n.nspname NOT LIKE 'pg\\_temp%' AND c.relpersistence = 'p'
      ORDER BY 1, 2`,
  );
  const result: SequenceSync = { advanced: [], ahead: [], missing: [] };
  for (const { schema, name } of rows) {
    const q = `${ident(schema)}.${ident(name)}`;
    const label = `${schema}.${name}`;
    const { rows: [exists] } = await target.query<{ ok: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS ok`, [q]);
    if (!exists?.ok) {
      result.missing.push(label);
      continue;
    }
    const src = await position(source, q);
    const tgt = await position(target, q);
    if (src.increment !== tgt.increment) {
      throw new PgferryError(ErrorCodes.CUTOVER, `target: sequence ${label} increments by ${tgt.increment}, the source's by ${src.increment}; ALTER SEQUENCE ${q} INCREMENT BY ${src.increment} on the target, then retry the cutover`);
    }
    const behind = src.increment > 0n ? next(tgt) < next(src) : next(tgt) > next(src);
    if (!behind) {
      result.ahead.push(label);
      continue;
    }
    await target.query(`SELECT setval($1::regclass, $2::bigint, $3)`, [q, src.last.toString(), src.called]);
    result.advanced.push(label);
  }
  return result;
}
