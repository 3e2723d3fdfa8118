import pg from 'pg';
import { PgferryError, ErrorCodes, PreflightError } from '../errors.js';
import { parseLsn, type Lsn } from '../protocol/lsn.js';
import { ident, literal, qualified } from '../pg/connection.js';
import type { SourceTable } from './catalog.js';

/** What the source knows about pgferry's slot. */
export interface SlotState {
  active: boolean;
  plugin: string;
  database: string;
  confirmedFlush: Lsn | null;
  /** `lost` means the server removed WAL the slot needed: the migration cannot continue. */
  walStatus: string | null;
}

/** Reads the slot's row from `pg_replication_slots`; null when there is no such slot. */
export async function readSlot(client: pg.Client, slot: string): Promise<SlotState | null> {
  const { rows: [r] } = await client.query<{ active: boolean; plugin: string; database: string; confirmed: string | null; wal_status: string | null }>(
    `SELECT active, plugin, database, confirmed_flush_lsn::text AS confirmed, wal_status
       FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  if (!r) return null;
  return { active: r.active, plugin: r.plugin, database: r.database, confirmedFlush: r.confirmed ? parseLsn(r.confirmed) : null, walStatus: r.wal_status };
}

/**
 * Drops the slot. A slot still marked active is given a short while to be released (after a crash
 * the server notices the dead connection only when it next uses it); one that stays active belongs
 * to a live process, and the drop is refused with the remedy.
 */
export async function dropSlot(client: pg.Client, slot: string, waitMs = 30_000): Promise<void> {
  const deadline = Date.now() + waitMs;
  let state = await readSlot(client, slot);
  while (state?.active && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    state = await readSlot(client, slot);
  }
  if (!state) return;
  if (state.active) throw new PreflightError(`source: replication slot ${slot} is in use by another process (is another pgferry running?); stop it first`);
  await client.query('SELECT pg_drop_replication_slot($1)', [slot]);
}

/**
 * Makes the publication publish exactly `tables`, partitioned tables through their root
 * (`publish_via_partition_root`), with every operation including TRUNCATE.
 */
export async function ensurePublication(client: pg.Client, name: string, tables: SourceTable[]): Promise<void> {
  // One made beforehand by the tables' owner (pgferry's role need not own them) is kept as it is.
  const found = await inspectPublication(client, name, tables);
  if (found.exists && found.problem === null) return;
  if (found.exists) await client.query(`DROP PUBLICATION ${ident(name)}`);
  await client.query(publicationDdl(name, tables));
}

/** The statement that creates the publication pgferry wants (also what preflight tells a DBA to run). */
export function publicationDdl(name: string, tables: SourceTable[]): string {
  // ONLY: an ordinary table's inheritance children are separate tables, published (and copied) only if selected.
  const list = tables.map((t) => (t.relkind === 'r' ? `ONLY ${qualified(t)}` : qualified(t))).join(', ');
  return `CREATE PUBLICATION ${ident(name)} FOR TABLE ${list} WITH (publish = 'insert, update, delete, truncate', publish_via_partition_root = true)`;
}

/**
 * Publication `name` as pgferry needs it: exactly `tables`, every operation, partitions through
 * their root, and (PostgreSQL 15+) no row filter, column list or whole schema, any of which would
 * make the server skip changes silently. `problem`: the first way it differs (null: it fits);
 * `owned`: the current role may drop it.
 */
export async function inspectPublication(client: pg.Client, name: string, tables: SourceTable[]): Promise<{ exists: boolean; owned: boolean; problem: string | null }> {
  const { rows: [v] } = await client.query<{ n: number }>(`SELECT current_setting('server_version_num')::int AS n`);
  const pg15 = (v?.n ?? 0) >= 150000;
  const { rows: [p] } = await client.query<{ owned: boolean; alltables: boolean; ops: boolean; viaroot: boolean; rels: number[]; filtered: string[]; columns: string[]; schemas: boolean }>(
    `SELECT pg_has_role(p.pubowner, 'USAGE') AS owned, p.puballtables AS alltables,
            p.pubinsert AND p.pubupdate AND p.pubdelete AND p.pubtruncate AS ops, p.pubviaroot AS viaroot,
            ARRAY(SELECT pr.prrelid::int8::int FROM pg_publication_rel pr WHERE pr.prpubid = p.oid) AS rels,
            ${pg15 ? `ARRAY(SELECT pr.prrelid::regclass::text FROM pg_publication_rel pr WHERE pr.prpubid = p.oid AND pr.prqual IS NOT NULL)` : `'{}'::text[]`} AS filtered,
            ${pg15 ? `ARRAY(SELECT pr.prrelid::regclass::text FROM pg_publication_rel pr WHERE pr.prpubid = p.oid AND pr.prattrs IS NOT NULL)` : `'{}'::text[]`} AS columns,
            ${pg15 ? `EXISTS (SELECT 1 FROM pg_publication_namespace pn WHERE pn.pnpubid = p.oid)` : 'false'} AS schemas
       FROM pg_publication p WHERE p.pubname = $1`,
    [name],
  );
  if (!p) return { exists: false, owned: false, problem: 'does not exist' };
  const published = new Set(p.rels.map(Number));
  const differences: [boolean, string][] = [
    [p.alltables, 'publishes all tables'],
    [p.schemas, 'publishes whole schemas (TABLES IN SCHEMA)'],
    [p.filtered.length > 0, `has a row filter on ${p.filtered.join(', ')}`],
    [p.columns.length > 0, `has a column list on ${p.columns.join(', ')}`],
    [!p.ops, 'does not publish every operation (insert, update, delete, truncate)'],
    [!p.viaroot, 'does not publish partitions through their root (publish_via_partition_root)'],
    [published.size !== tables.length || !tables.every((t) => published.has(t.oid)), OTHER_TABLES],
  ];
  return { exists: true, owned: p.owned, problem: differences.find(([differs]) => differs)?.[1] ?? null };
}

/** {@link inspectPublication}'s problem when only the set of tables differs. */
const OTHER_TABLES = 'publishes other tables than the migrated ones';

/** {@link publicationDdl} for messages: the first three tables, then how many there are in all. */
export function publicationDdlForMessage(name: string, tables: SourceTable[]): string {
  return `${publicationDdl(name, tables.slice(0, 3))}${tables.length > 3 ? ` ... (all ${tables.length} tables)` : ''}`;
}

/** Checks that an existing publication still publishes exactly `tables`, every change of them (a resume must not change scope). */
export async function checkPublication(client: pg.Client, name: string, tables: SourceTable[]): Promise<void> {
  const { exists, problem } = await inspectPublication(client, name, tables);
  if (!exists) throw new PreflightError(`source: publication ${name} is gone but the migration is streaming; recreate it with the same tables or restart the migration from scratch (pgferry cleanup)`);
  if (problem === OTHER_TABLES) {
    throw new PreflightError(`source: publication ${name} publishes other tables than this run selects; use the same --tables as when the migration started`);
  }
  if (problem !== null) {
    throw new PreflightError(`source: publication ${name} ${problem}, so the source would not send every change of exactly the migrated tables; recreate it as: ${publicationDdlForMessage(name, tables)}`);
  }
}

/** A slot just created with an exported snapshot; the snapshot lives until `release()`. */
export interface ExportedSlot {
  consistentPoint: Lsn;
  snapshotName: string;
  /** Closes the replication connection that keeps the snapshot importable. */
  release(): Promise<void>;
}

/**
 * Creates a logical slot for pgoutput over the replication protocol and exports its snapshot.
 * Every transaction committed after `consistentPoint` will be in the slot and none before it, so a
 * copy under `snapshotName` plus streaming from `consistentPoint` sees each change exactly once.
 * The connection must stay open and idle until every copy worker has imported the snapshot.
 * A `temporary` slot (for a resumed copy: only its snapshot is used) is dropped when the
 * connection closes, by `release()` or a crash.
 */
export async function createSlotWithSnapshot(config: pg.ClientConfig, slot: string, opts: { temporary?: boolean } = {}): Promise<ExportedSlot> {
  const client = new pg.Client({ ...config, replication: 'database' } as pg.ClientConfig);
  client.on('error', () => {}); // surfaced by the copy workers' failure to import the snapshot
  await client.connect();
  try {
    // The pre-15 syntax: every server from 14 to 18 accepts it.
    const { rows: [r] } = await client.query<{ consistent_point: string; snapshot_name: string }>(`CREATE_REPLICATION_SLOT ${ident(slot)}${opts.temporary ? ' TEMPORARY' : ''} LOGICAL pgoutput EXPORT_SNAPSHOT`);
    if (!r?.snapshot_name) throw new PgferryError(ErrorCodes.PROTOCOL, `source: CREATE_REPLICATION_SLOT returned no snapshot for slot ${slot}`);
    return { consistentPoint: parseLsn(r.consistent_point), snapshotName: r.snapshot_name, release: () => client.end() };
  } catch (err) {
    await client.end().catch(() => {});
    throw err;
  }
}

/**
 * `START_REPLICATION` options for pgoutput: protocol 1 (whole transactions, sent at commit) or,
 * with `streaming`, protocol 2 with `streaming 'on'` (a transaction that outgrows the walsender's
 * `logical_decoding_work_mem` is sent in blocks while it runs); text values either way.
 * `messages` also streams logical decoding messages (captured DDL), in order with the rows.
 */
export function startReplicationSql(slot: string, publication: string, startLsn: string, opts: { messages?: boolean; streaming?: boolean } = {}): string {
  const proto = opts.streaming ? "proto_version '2', streaming 'on'" : "proto_version '1'";
  return `START_REPLICATION SLOT ${ident(slot)} LOGICAL ${startLsn} (${proto}, publication_names ${literal(ident(publication))}${opts.messages ? ", messages 'true'" : ''})`;
}
