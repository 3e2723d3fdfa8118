import type pg from 'pg';
import { ErrorCodes, PgferryError } from '../errors.js';
import { ident, literal } from '../pg/connection.js';

/** What a fence changed, so {@link unfenceSource} restores exactly the settings that were there before. */
export interface Fence {
  database: string;
  /**
   * Login roles fenced in this database: those that can write a migrated table (superusers
   * included), and those with a `default_transaction_read_only` of their own (it would override
   * the database's).
   */
  roles: string[];
  /** `default_transaction_read_only` before the fence: key '' is the database itself, else a role. Absent: not set. */
  previous: Map<string, string>;
  /** Sessions terminated by the fence. */
  terminated: number;
  /** When the fence took hold (the server's clock): sessions opened since start read-only. Null: not yet. */
  since?: string | null;
}

/**
 * The login roles to fence: those that can change any of `tables` (by privilege, ownership or
 * superuser), and those whose own `default_transaction_read_only` (for every database or this
 * one) would override the database's (a role may write through a function or `SET ROLE`).
 */
export async function writerRoles(client: pg.Client, tableOids: number[]): Promise<string[]> {
  const { rows } = await client.query<{ rolname: string }>(
    `SELECT r.rolname FROM pg_roles r
      WHERE r.rolcanlogin
        AND (r.rolsuper OR EXISTS (SELECT 1 FROM unnest($1::oid[]) AS t(oid) WHERE has_table_privilege(r.oid, t.oid, 'INSERT, UPDATE, DELETE, TRUNCATE'))
             OR EXISTS (SELECT 1 FROM pg_db_role_setting s, unnest(s.setconfig) AS cfg
                         WHERE s.setrole = r.oid AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
                           AND cfg LIKE 'default\\_transaction\\_read\\_only=%'))
      ORDER BY 1`,
    [tableOids],
  );
  return rows.map((r) => r.rolname);
}

/** `default_transaction_read_only` as set for this database (key '') and for roles in it. */
async function readOnlySettings(client: pg.Client): Promise<Map<string, string>> {
  const { rows } = await client.query<{ role: string | null; value: string }>(
    `SELECT r.rolname AS role, substr(cfg, length('default_transaction_read_only=') + 1) AS value
       FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) AS cfg
      WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND cfg LIKE 'default\\_transaction\\_read\\_only=%'`,
  );
  return new Map(rows.map((r) => [r.role ?? '', r.value]));
}

/** Reads what a fence will change (the database, the writer roles, their current settings) before changing it. */
export async function planFence(client: pg.Client, tableOids: number[]): Promise<Fence> {
  const { rows: [db] } = await client.query<{ name: string }>('SELECT current_database() AS name');
  return { database: db!.name, roles: await writerRoles(client, tableOids), previous: await readOnlySettings(client), terminated: 0 };
}

/**
 * Fences writes on the source database: `default_transaction_read_only = on` for the database and
 * for the fenced roles (in this database only, so a role-level `off` cannot override it),
 * terminates every session of the database that started before (whatever its role: one may write
 * through a function or `SET ROLE`) and every one holding a transaction id, and waits until none
 * is left. New sessions start read-only (and cannot call `nextval`). A prepared transaction, found
 * before or after, fails the fence (it could still commit). `client` is the cutover's own
 * session, which is never terminated. A session that opts out (`BEGIN READ WRITE`) is not
 * stopped: the cutover checks the stream for writes after the fence before it switches.
 */
export async function fenceSource(client: pg.Client, fence: Fence, signal: AbortSignal): Promise<Fence> {
  const { database, roles } = fence;
  if (signal.aborted) throw new PgferryError(ErrorCodes.CUTOVER, `source: fencing database ${database} timed out before it began; retry the cutover`);
  await client.query(`ALTER DATABASE ${ident(database)} SET default_transaction_read_only = on`);
  for (const role of roles) {
    if (signal.aborted) throw new PgferryError(ErrorCodes.CUTOVER, `source: fencing database ${database} timed out; retry the cutover`);
    await client.query(`ALTER ROLE ${ident(role)} IN DATABASE ${ident(database)} SET default_transaction_read_only = on`);
  }
  const { rows: [since] } = await client.query<{ at: string }>('SELECT clock_timestamp()::text AS at');
  fence.since = since!.at;
  const noPrepared = async (): Promise<void> => {
    const prepared = await client.query<{ gid: string }>('SELECT gid FROM pg_prepared_xacts WHERE database = current_database()');
    if (prepared.rowCount) {
      throw new PgferryError(ErrorCodes.CUTOVER, `source: database ${database} has ${prepared.rowCount} prepared transaction(s) (${prepared.rows.map((r) => r.gid).join(', ')}) that could still commit; COMMIT PREPARED or ROLLBACK PREPARED them, then retry the cutover`);
    }
  };
  await noPrepared();
  // Sessions that started before the fence (they are not read-only), and any that hold a
  // transaction id (they wrote), background workers included.
  const remaining = `SELECT pid, usename FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid()
        AND ((backend_type = 'client backend' AND backend_start < $1::timestamptz)
             OR (backend_xid IS NOT NULL AND backend_type IN ('client backend', 'background worker')))`;
  const params = [since!.at];
  const { rows: found } = await client.query<{ pid: number }>(remaining, params);
  fence.terminated = await terminate(client, found.map((r) => r.pid));
  for (;;) {
    const { rows } = await client.query<{ pid: number; usename: string }>(remaining, params);
    if (rows.length === 0) {
      // One prepared by a session just before it was terminated would outlive it.
      await noPrepared();
      return fence;
    }
    if (signal.aborted) {
      throw new PgferryError(ErrorCodes.CUTOVER, `source: ${rows.length} session(s) that could write (pids ${rows.map((r) => `${r.pid} (${r.usename})`).join(', ')}) did not end; end them or grant pgferry's role pg_signal_backend, then retry the cutover`);
    }
    // One that began a transaction since is terminated too (one pgferry may not signal is named on the timeout).
    await terminate(client, rows.map((r) => r.pid));
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Restores `default_transaction_read_only` for the database and the fenced roles to what it was before the fence. */
export async function unfenceSource(client: pg.Client, fence: Pick<Fence, 'database' | 'roles' | 'previous'>): Promise<void> {
  const db = ident(fence.database);
  const restore = (target: string, key: string): string => {
    const before = fence.previous.get(key);
    return before === undefined ? `${target} RESET default_transaction_read_only` : `${target} SET default_transaction_read_only = ${literal(before)}`;
  };
  await client.query(restore(`ALTER DATABASE ${db}`, ''));
  for (const role of fence.roles) await client.query(restore(`ALTER ROLE ${ident(role)} IN DATABASE ${db}`, role));
}

/**
 * After an unfence: terminates the database's sessions opened since `since` (they started
 * read-only and would stay so; a pool opens them again, writable). Not the caller's own. Returns
 * how many.
 */
export async function endReadOnlySessions(client: pg.Client, since: string, until: string): Promise<number> {
  const { rows } = await client.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
        AND backend_start >= $1::timestamptz AND backend_start < $2::timestamptz`,
    [since, until],
  );
  return terminate(client, rows.map((r) => r.pid));
}

/**
 * Terminates each session in `pids` that pgferry's role may signal; one it may not (a
 * superuser's, without superuser) or one already gone is skipped. Returns how many were ended.
 */
async function terminate(client: pg.Client, pids: number[]): Promise<number> {
  let ended = 0;
  for (const pid of pids) {
    try {
      const { rows: [r] } = await client.query<{ ok: boolean }>('SELECT pg_terminate_backend($1) AS ok', [pid]);
      if (r?.ok) ended++;
    } catch {
      // Not allowed: the wait for the fence names it when it times out.
    }
  }
  return ended;
}

/**
 * Makes the target writable for the applications' roles: removes a `default_transaction_read_only = on`
 * set for the target database or for those roles in it (pgferry itself never sets one there).
 * Returns what it changed.
 */
export async function makeTargetWritable(client: pg.Client, roles: string[]): Promise<string[]> {
  const { rows: [db] } = await client.query<{ name: string }>('SELECT current_database() AS name');
  const settings = await readOnlySettings(client);
  const changed: string[] = [];
  for (const [key, value] of settings) {
    if (value.toLowerCase() === 'off' || value.toLowerCase() === 'false') continue;
    if (key === '') await client.query(`ALTER DATABASE ${ident(db!.name)} RESET default_transaction_read_only`);
    else if (roles.includes(key)) await client.query(`ALTER ROLE ${ident(key)} IN DATABASE ${ident(db!.name)} RESET default_transaction_read_only`);
    else continue;
    changed.push(key === '' ? `database ${db!.name}` : `role ${key}`);
  }
  return changed;
}
