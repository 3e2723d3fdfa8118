import type pg from 'pg';
import { SchemaError, describeError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { TableName } from '../pg/connection.js';
import { readCatalog, readTargetFacts } from './catalog.js';
import { buildSchema, type SchemaObject, type SchemaPhase } from './ddl.js';
import { planSchema, scopeCatalog, type SchemaPlan } from './plan.js';

/**
 * Reads the source's catalog (narrowed to `tables` when given) and, with a target, the target's,
 * and plans what schema copy would run. Without a target the plan is the full script.
 */
export async function planSchemaCopy(source: pg.Client, target: pg.Client | null, tables: TableName[]): Promise<SchemaPlan> {
  const scoped = scopeCatalog(await readCatalog(source), tables);
  const built = buildSchema(scoped.catalog);
  built.notes.push(...scoped.notes);
  if (!target) return planSchema(built, null, null);
  const [targetCatalog, facts] = [await readCatalog(target), await readTargetFacts(target)];
  return planSchema(built, buildSchema(targetCatalog), facts);
}

/** Throws one {@link SchemaError} listing every conflict of the plan. */
export function assertNoConflicts(plan: SchemaPlan): void {
  if (plan.conflicts.length > 0) throw new SchemaError(plan.conflicts.join('\n'));
}

/**
 * Runs objects on the target with an empty `search_path` (the DDL is fully qualified) and without
 * function body checks (functions may refer to objects created later, as with pg_dump). Pre-data
 * runs in one transaction: all of it or nothing. Post-data runs object by object, so that a
 * foreign key added NOT VALID is committed before its VALIDATE, which then only takes a SHARE
 * UPDATE EXCLUSIVE lock. Re-running is safe: the next plan skips what exists and matches.
 */
export async function applySchemaObjects(target: pg.Client, phase: SchemaPhase, objects: SchemaObject[], log?: Logger): Promise<void> {
  if (objects.length === 0) return;
  const run = async (o: SchemaObject): Promise<void> => {
    for (const sql of o.statements) {
      try {
        await target.query(sql);
      } catch (err) {
        throw new SchemaError(`target: cannot create ${o.label} (${describeError(err)}); fix the target, or start with --schema-copy=false and create the schema yourself`, err);
      }
    }
  };
  await target.query(`SET search_path = ''; SET check_function_bodies = off`);
  try {
    if (phase === 'pre-data') {
      await target.query('BEGIN');
      try {
        for (const o of objects) await run(o);
        await target.query('COMMIT');
      } catch (err) {
        await target.query('ROLLBACK').catch(() => {});
        throw err;
      }
    } else {
      for (const o of objects) {
        const started = Date.now();
        await run(o);
        if (Date.now() - started > 5_000) log?.info({ object: o.label, ms: Date.now() - started }, 'schema object created');
      }
    }
  } finally {
    await target.query('RESET search_path; RESET check_function_bodies').catch(() => {});
  }
  log?.info({ phase, objects: objects.length }, `schema copy: ${phase} applied`);
}

/**
 * One phase of schema copy inside `pgferry start`. Pre-data fails before anything is created when
 * any object (of either phase) conflicts, so a migration never stops after a long copy for a
 * problem that was visible at the start.
 */
export async function copySchemaPhase(opts: { source: pg.Client; target: pg.Client; tables: TableName[]; phase: SchemaPhase; log: Logger }): Promise<void> {
  const plan = await planSchemaCopy(opts.source, opts.target, opts.tables);
  assertNoConflicts(plan);
  if (opts.phase === 'pre-data') for (const note of plan.notes) opts.log.warn({ note }, 'schema copy: not copied');
  await applySchemaObjects(opts.target, opts.phase, opts.phase === 'pre-data' ? plan.preData : plan.postData, opts.log);
}
