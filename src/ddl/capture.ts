import type pg from 'pg';
import type { Settings } from '../config/settings.js';
import { PreflightError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { ident, literal } from '../pg/connection.js';
import { DDL_MESSAGE_PREFIX } from './ddl-message.js';

/** Names of the source objects that capture DDL for one slot (event trigger names are per database). */
export function captureNames(slot: string): { fn: string; endTrigger: string; dropTrigger: string } {
  return { fn: `pgferry.${ident(`capture_ddl_${slot}`)}`, endTrigger: ident(`pgferry_ddl_${slot}`), dropTrigger: ident(`pgferry_drop_${slot}`) };
}

/**
 * The event trigger function. At `ddl_command_end` it keeps the commands that touch a published
 * table or one of its indexes (or, when `allTables`, create a new permanent table, which it adds to
 * the publication in the same transaction so its rows are published from the first one), and writes
 * one transactional logical message with the statement, the session's effective search path and the
 * resulting shape of each table it touched. At `sql_drop` it reports DROP TABLE and DROP INDEX.
 * SECURITY DEFINER (owned by pgferry's superuser role): any role's DDL can extend the publication
 * and emit the message. Its own search path is pinned for the call and the caller's restored after.
 */
function functionSql(slot: string, publication: string, allTables: boolean): string {
  const pub = literal(publication);
  return `CREATE OR REPLACE FUNCTION ${captureNames(slot).fn}() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER AS $fn$
DECLARE
  saved text := pg_catalog.current_setting('search_path');
  path text[] := pg_catalog.current_schemas(false);
  cmds jsonb := '[]';
  dropped jsonb := '[]';
  rels oid[] := '{}';
  types oid[] := '{}';
  r record;
  c record;
  rel oid;
BEGIN
  PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
  IF TG_EVENT = 'sql_drop' THEN
    FOR r IN SELECT * FROM pg_event_trigger_dropped_objects() d WHERE d.original AND NOT d.is_temporary LOOP
      IF r.object_type = 'table' AND TG_TAG = 'DROP TABLE' THEN
        dropped := dropped || to_jsonb(r.object_identity);
        cmds := cmds || jsonb_build_object('tag', TG_TAG, 'type', r.object_type, 'identity', r.object_identity);
      ELSIF r.object_type = 'index' AND TG_TAG = 'DROP INDEX' THEN
        cmds := cmds || jsonb_build_object('tag', TG_TAG, 'type', r.object_type, 'identity', r.object_identity);
      END IF;
    END LOOP;
  ELSE
    FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
      IF r.classid = 'pg_type'::regclass AND EXISTS (SELECT 1 FROM pg_type t WHERE t.oid = r.objid AND t.typtype = 'e') THEN
        types := types || r.objid;
        cmds := cmds || jsonb_build_object('tag', r.command_tag, 'type', r.object_type, 'identity', r.object_identity);
        CONTINUE;
      END IF;
      CONTINUE WHEN r.classid <> 'pg_class'::regclass;
      SELECT cl.oid, cl.relkind, cl.relpersistence, cl.relispartition, coalesce(i.indrelid, cl.oid) AS tab INTO c
        FROM pg_class cl LEFT JOIN pg_index i ON i.indexrelid = cl.oid WHERE cl.oid = r.objid;
      CONTINUE WHEN c.oid IS NULL;
      rel := c.tab;
      IF EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
                  WHERE p.pubname = ${pub} AND (pr.prrelid = rel OR pr.prrelid IN (SELECT relid FROM pg_partition_ancestors(rel)))) THEN
        cmds := cmds || jsonb_build_object('tag', r.command_tag, 'type', r.object_type, 'identity', r.object_identity,
                                           'indexdef', CASE WHEN r.command_tag = 'CREATE INDEX' AND c.relkind IN ('i', 'I') THEN pg_get_indexdef(c.oid) END);
        rels := rels || rel;
      ELSIF ${allTables} AND r.command_tag = 'CREATE TABLE' AND EXISTS (SELECT 1 FROM pg_publication p WHERE p.pubname = ${pub}) AND r.object_type = 'table' AND c.relkind IN ('r', 'p')
            AND c.relpersistence = 'p' AND NOT c.relispartition AND r.schema_name NOT IN ('pgferry', 'information_schema') THEN
        IF EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = rel AND (i.indisprimary OR i.indisreplident)) THEN
          EXECUTE format('ALTER PUBLICATION %I ADD TABLE %s%s', ${pub}, CASE WHEN c.relkind = 'r' THEN 'ONLY ' ELSE '' END, rel::regclass);
          cmds := cmds || jsonb_build_object('tag', r.command_tag, 'type', r.object_type, 'identity', r.object_identity);
        ELSE
          cmds := cmds || jsonb_build_object('tag', r.command_tag, 'type', r.object_type, 'identity', r.object_identity,
            'unsupported', 'created without a primary key, so its changes cannot be published; add one on the source and the table to publication ' || ${pub});
        END IF;
        rels := rels || rel;
      END IF;
    END LOOP;
  END IF;
  IF cmds <> '[]' THEN
    PERFORM pg_logical_emit_message(true, ${literal(DDL_MESSAGE_PREFIX)}, jsonb_build_object(
      'publication', ${pub}, 'tag', TG_TAG, 'query', current_query(), 'searchPath', to_jsonb(path),
      'commands', cmds, 'droppedTables', dropped,
      'tables', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'identity', format('%I.%I', n.nspname, cl.relname),
                   'columns', (SELECT coalesce(jsonb_agg(jsonb_build_object('name', a.attname, 'type', tn.nspname || '.' || t.typname, 'typmod', a.atttypmod) ORDER BY a.attnum), '[]')
                                 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid JOIN pg_namespace tn ON tn.oid = t.typnamespace
                                WHERE a.attrelid = cl.oid AND a.attnum > 0 AND NOT a.attisdropped))), '[]')
                   FROM pg_class cl JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE cl.oid IN (SELECT DISTINCT unnest(rels))),
      'enums', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                  'identity', format('%I.%I', n.nspname, t.typname),
                  'labels', (SELECT jsonb_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid))), '[]')
                  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid IN (SELECT DISTINCT unnest(types)))
    )::text);
  END IF;
  PERFORM pg_catalog.set_config('search_path', saved, true);
END
$fn$`;
}

/**
 * Installs (or refreshes: idempotent) the capture on the source: schema `pgferry`, the function and
 * its two event triggers. Needs a superuser (or rds_superuser) role, see {@link checkCapturePrivilege}.
 * `allTables`: the migration covers every table, so tables created on the source join it.
 */
export async function installDdlCapture(client: pg.Client, slot: string, publication: string, allTables: boolean): Promise<void> {
  const { endTrigger, dropTrigger, fn } = captureNames(slot);
  await client.query('BEGIN');
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS pgferry`);
    await client.query(functionSql(slot, publication, allTables));
    await client.query(`REVOKE ALL ON FUNCTION ${fn}() FROM PUBLIC`);
    for (const [name, event] of [[endTrigger, 'ddl_command_end'], [dropTrigger, 'sql_drop']] as const) {
      await client.query(`DROP EVENT TRIGGER IF EXISTS ${name}`);
      await client.query(`CREATE EVENT TRIGGER ${name} ON ${event} EXECUTE FUNCTION ${fn}()`);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/**
 * Removes the capture (triggers, function, and schema `pgferry` when nothing else is in it).
 * Returns whether there was anything to remove. Safe to run twice.
 */
export async function removeDdlCapture(client: pg.Client, slot: string): Promise<boolean> {
  const { endTrigger, dropTrigger, fn } = captureNames(slot);
  const { rows: [r] } = await client.query<{ present: boolean }>(
    `SELECT to_regprocedure($1) IS NOT NULL OR EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname IN ($2, $3)) AS present`,
    [`${fn}()`, `pgferry_ddl_${slot}`, `pgferry_drop_${slot}`],
  );
  if (!r?.present) return false;
  await client.query(`DROP EVENT TRIGGER IF EXISTS ${endTrigger}; DROP EVENT TRIGGER IF EXISTS ${dropTrigger}; DROP FUNCTION IF EXISTS ${fn}()`);
  await client.query(`DO $$ BEGIN
    IF to_regnamespace('pgferry') IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_depend WHERE refobjid = to_regnamespace('pgferry')::oid AND deptype = 'n') THEN DROP SCHEMA pgferry; END IF;
  END $$`);
  return true;
}

/** Null when the role can install event triggers, else the one-line problem with its remedy. */
export async function checkCapturePrivilege(client: pg.Client): Promise<string | null> {
  const { rows: [r] } = await client.query<{ user: string; ok: boolean }>(
    `SELECT current_user AS user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
            OR coalesce(pg_has_role(current_user, (SELECT oid FROM pg_roles WHERE rolname = 'rds_superuser'), 'MEMBER'), false) AS ok`,
  );
  if (r?.ok) return null;
  return `source: --capture-ddl installs an event trigger, which needs a superuser (or rds_superuser) role, and ${r?.user ?? 'the role'} is not one; connect as one or turn captureDdl off`;
}

/**
 * At every start: with `captureDdl`, checks the role and (re)installs the capture; without it,
 * removes a capture left by an earlier run (it would still extend the publication).
 */
export async function setUpDdlCapture(source: pg.Client, settings: Settings, log: Logger): Promise<void> {
  if (!settings.captureDdl) {
    if (await removeDdlCapture(source, settings.slot)) log.info({ slot: settings.slot }, 'captureDdl is off: removed the DDL capture event triggers from the source');
    return;
  }
  const problem = await checkCapturePrivilege(source);
  if (problem) throw new PreflightError(problem);
  await installDdlCapture(source, settings.slot, settings.publication, settings.tables.length === 0);
  log.info({ slot: settings.slot }, 'DDL capture installed on the source (event triggers)');
}
