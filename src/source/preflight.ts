import type pg from 'pg';
import type { Logger } from 'pino';
import { PreflightError } from '../errors.js';
import { ident, qualified, tableKey } from '../pg/connection.js';
import type { SourceTable } from './catalog.js';
import { inspectPublication, publicationDdlForMessage } from './slot.js';

/**
 * Checks everything the source must offer before a slot is created, and reports every problem at
 * once, each with the statement or setting that fixes it.
 *
 * An unlogged table (or partition) is refused, never skipped: its changes are not in the WAL, and
 * leaving it out unasked would lose it.
 *
 * `slotExists`: the slot is already there (a resume), so it needs no free slot. `log` gets the
 * warnings: what may stop the migration later but is not known to (a SQL_ASCII database).
 */
export async function preflightSource(client: pg.Client, tables: SourceTable[], opts: { slotExists: boolean; log?: Logger; publication?: string }): Promise<void> {
  const problems: string[] = [];
  const { rows: [s] } = await client.query<{
    wal_level: string; user: string; can_replicate: boolean; max_slots: number; used_slots: number; max_senders: number; used_senders: number; version: number; encoding: string;
  }>(`SELECT current_setting('wal_level') AS wal_level, current_user AS user, current_setting('server_encoding') AS encoding,
             (SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user)
               OR pg_has_role(current_user, oid, 'MEMBER') AS can_replicate,
             current_setting('max_replication_slots')::int AS max_slots,
             (SELECT count(*)::int FROM pg_replication_slots) AS used_slots,
             current_setting('max_wal_senders')::int AS max_senders,
             (SELECT count(*)::int FROM pg_stat_replication) AS used_senders,
             current_setting('server_version_num')::int AS version
        FROM (SELECT coalesce((SELECT oid FROM pg_roles WHERE rolname = 'rds_replication'), 0) AS oid) r`);
  if (!s) throw new PreflightError('source: could not read server settings');
  if (s.version < 140000) problems.push(`source: PostgreSQL ${Math.floor(s.version / 10000)} is not supported; pgferry needs PostgreSQL 14 or newer on the source`);
  if (s.wal_level !== 'logical') {
    problems.push(`source: wal_level is "${s.wal_level}"; run ALTER SYSTEM SET wal_level = logical and restart the source server`);
  }
  if (!s.can_replicate) problems.push(`source: role ${s.user} cannot replicate; run ALTER ROLE ${ident(s.user)} REPLICATION`);
  if (!opts.slotExists && s.used_slots >= s.max_slots) {
    problems.push(`source: all ${s.max_slots} replication slots are in use; raise max_replication_slots (restart needed) or drop an unused slot`);
  }
  if (s.used_senders >= s.max_senders) {
    problems.push(`source: all ${s.max_senders} WAL senders are in use; raise max_wal_senders (restart needed)`);
  }
  if (tables.length === 0) problems.push('source: there are no tables to migrate (check --tables and the source database name)');
  if (s.encoding === 'SQL_ASCII') {
    // pgferry reads text as UTF-8; such a database may hold bytes that are not, and the first one stops the copy or apply.
    opts.log?.warn(`source: the database's encoding is SQL_ASCII, and pgferry reads text as UTF-8: a value that is not valid UTF-8 stops the copy or apply at its row (error 22021, nothing lost); fix such values on the source now (see Known limits in the README)`);
  }

  // The publication pgferry will create (one that already matches is kept: see ensurePublication).
  const found = opts.publication !== undefined && tables.length > 0 ? await inspectPublication(client, opts.publication, tables) : null;
  const made = (name: string): string => `, or have a superuser or the tables' owner create it beforehand (pgferry keeps it): ${publicationDdlForMessage(name, tables)}`;
  if (opts.publication !== undefined && found?.exists && found.problem !== null && !found.owned) {
    problems.push(`source: publication ${opts.publication} exists but ${found.problem}, and role ${s.user} does not own it, so pgferry cannot replace it; have its owner drop it${made(opts.publication)}`);
  } else if (opts.publication !== undefined && found?.problem) {
    const { rows: [p] } = await client.query<{ create: boolean; db: string; unowned: string[] }>(
      `SELECT has_database_privilege(current_database(), 'CREATE') AS create, current_database() AS db,
              ARRAY(SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE c.oid = ANY($1::oid[]) AND NOT pg_has_role(c.relowner, 'USAGE') ORDER BY 1) AS unowned`,
      [tables.map((t) => t.oid)],
    );
    if (p && !p.create) problems.push(`source: role ${s.user} cannot create publication ${opts.publication} (it needs CREATE on database ${p.db}); run GRANT CREATE ON DATABASE ${ident(p.db)} TO ${ident(s.user)}${made(opts.publication)}`);
    if (p && p.unowned.length > 0) {
      problems.push(`source: role ${s.user} does not own ${p.unowned.length === 1 ? 'table' : 'tables'} ${p.unowned.slice(0, 5).join(', ')}${p.unowned.length > 5 ? ` and ${p.unowned.length - 5} more` : ''}, and publishing a table takes its owner; run pgferry as the owner${made(opts.publication)}`);
    }
  }

  const oids = tables.map((t) => t.oid);
  const { rows } = await client.query<{ oid: number; readable: boolean; schema: string; schema_usable: boolean; bad_partitions: string[]; unlogged: string[]; foreign_partitions: string[] }>(
    `WITH leaves AS (
       SELECT t.oid AS root, c.oid AS leaf, c.relreplident, c.relpersistence, c.relkind,
              EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND (i.indisprimary OR i.indisreplident)) AS has_key
         FROM unnest($1::oid[]) AS t(oid)
         JOIN LATERAL (SELECT relid FROM pg_partition_tree(t.oid) WHERE isleaf
                       UNION SELECT t.oid WHERE (SELECT relkind FROM pg_class WHERE oid = t.oid) = 'r') p ON true
         JOIN pg_class c ON c.oid = p.relid)
     SELECT r.oid::int8::int AS oid, has_table_privilege(r.oid, 'SELECT') AS readable,
            (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = r.oid) AS schema,
            has_schema_privilege((SELECT c.relnamespace FROM pg_class c WHERE c.oid = r.oid), 'USAGE') AS schema_usable,
            ARRAY(SELECT (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = l.leaf) FROM leaves l WHERE l.root = r.oid
                   AND l.relkind <> 'f' AND NOT (l.relreplident = 'f' OR (l.relreplident IN ('d', 'i') AND l.has_key))) AS bad_partitions,
            ARRAY(SELECT (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = l.leaf) FROM leaves l WHERE l.root = r.oid
                   AND l.relkind = 'f') AS foreign_partitions,
            ARRAY(SELECT (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = l.leaf) FROM leaves l WHERE l.root = r.oid
                   AND l.relpersistence = 'u') AS unlogged
       FROM unnest($1::oid[]) AS r(oid)`,
    [oids],
  );
  for (const t of tables) {
    const r = rows.find((x) => Number(x.oid) === t.oid);
    if (!r) continue;
    if (!r.readable) problems.push(`source: role ${s.user} cannot read table ${tableKey(t)}; run GRANT SELECT ON ${qualified(t)} TO ${ident(s.user)}`);
    const noSchema = `source: role ${s.user} cannot use schema ${ident(r.schema)}, so it cannot read the tables in it; run GRANT USAGE ON SCHEMA ${ident(r.schema)} TO ${ident(s.user)}`;
    if (!r.schema_usable && !problems.includes(noSchema)) problems.push(noSchema);
    // Unlogged: no WAL, so nothing to decode; a publication refuses such a table (22023), and an
    // unlogged partition is copied but its changes are never streamed.
    for (const leaf of r.unlogged) {
      problems.push(
        t.relkind === 'r'
          ? `source: table ${leaf} is unlogged, so its changes cannot be replicated; run ALTER TABLE ${leaf} SET LOGGED on the source, or leave it out with --tables`
          : `source: partition ${leaf} of table ${tableKey(t)} is unlogged, so its changes cannot be replicated; run ALTER TABLE ${leaf} SET LOGGED on the source, or leave ${tableKey(t)} out with --tables`,
      );
    }
    for (const leaf of r.foreign_partitions) {
      problems.push(`source: partition ${leaf} of table ${tableKey(t)} is a foreign table: its rows live on another server and its changes are not in this server's WAL; leave ${tableKey(t)} out with --tables and migrate it separately`);
    }
    for (const leaf of r.bad_partitions) {
      problems.push(
        `source: table ${leaf} has no primary key or replica identity, so its UPDATEs and DELETEs cannot replicate; ` +
          `add a primary key, or run ALTER TABLE ${leaf} REPLICA IDENTITY FULL`,
      );
    }
  }
  if (problems.length > 0) throw new PreflightError(problems.join('\n'));
}
