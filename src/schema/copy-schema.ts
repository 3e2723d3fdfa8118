import type pg from 'pg';
import { SchemaError, describeError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { cancelUntilEnded, type TableName } from '../pg/connection.js';
import { readCatalog, readTargetFacts } from './catalog.js';
import { buildSchema, qname, type SchemaObject, type SchemaPhase } from './ddl.js';
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

/** How often {@link EarlyIndexBuilder.finish} looks whether the build it waits for is waiting for a lock. */
const LOCK_CHECK_MS = 200;

/** Target sessions post-data uses by default for the statements that may run at once. */
export const DEFAULT_SCHEMA_PARALLEL = 4;

const SESSION_SETUP = `SET search_path = ''; SET check_function_bodies = off`;

/**
 * With several builds at once (post-data's sessions, or the early builder beside the copy) the
 * target's cores are already busy, and a build's own parallel workers cost more CPU than they save
 * (measured on 2 cores, 500k rows: a bigint key 270 CPU-ms serial, 530 with two workers). Turned
 * off there, back to the server's value otherwise; a value set in the connection URL is kept.
 */
const serialBuilds = (on: boolean): string =>
  `SELECT pg_catalog.set_config(name, ${on ? `'0'` : 'reset_val'}, false) FROM pg_catalog.pg_settings WHERE name = 'max_parallel_maintenance_workers' AND source <> 'client'`;

/** How {@link applySchemaObjects} runs. */
export interface ApplyOptions {
  log?: Logger;
  /** Target sessions at most for post-data's independent statements (default {@link DEFAULT_SCHEMA_PARALLEL}); 1: one session. */
  parallel?: number;
  /** Opens one more target session (with pgferry's session options); without it everything runs on `target`. */
  connect?: () => Promise<pg.Client>;
  /** Post-data: a build still running on another session when post-data starts (see {@link EarlyIndexBuilder.handOver}). */
  handedOver?: HandedOver;
}

/**
 * An object another session (the early builder) was building when post-data started. Post-data's
 * first run of parallel objects goes on beside it, its family counted as busy; nothing after that
 * run starts before `done`.
 */
export interface HandedOver {
  key: string;
  lock: NonNullable<SchemaObject['lock']>;
  /** True once built; false if that build was cancelled (post-data builds the object); rejects with the build's failure. */
  done: Promise<boolean>;
}

async function runObject(session: pg.Client, o: SchemaObject, log?: Logger): Promise<void> {
  const started = Date.now();
  for (const sql of o.statements) {
    try {
      await session.query(sql);
    } catch (err) {
      throw new SchemaError(`target: cannot create ${o.label} (${describeError(err)}); fix the target, or start with --schema-copy=false and create the schema yourself`, err);
    }
  }
  const ms = Date.now() - started;
  if (ms > 5_000) log?.info({ object: o.label, ms }, 'schema object created');
  else log?.debug({ object: o.label, ms }, 'schema object created');
}

/**
 * Runs objects on the target with an empty `search_path` (the DDL is fully qualified) and without
 * function body checks (functions may refer to objects created later, as with pg_dump). Pre-data
 * runs in one transaction: all of it or nothing. Post-data runs object by object, so that a
 * foreign key added NOT VALID is committed before its VALIDATE, which then only takes a SHARE
 * UPDATE EXCLUSIVE lock. Re-running is safe: the next plan skips what exists and matches.
 *
 * Post-data's runs of consecutive objects with a {@link SchemaObject.lock} (indexes and
 * non-foreign-key constraints, then the closing ANALYZEs) spread over up to `parallel` sessions;
 * everything else runs in order on `target`, once everything before it has finished. Within a
 * table family, objects start in order, and one whose lock is not shared waits until the family
 * has nothing running (no session ever waits on another's table lock). On the first failure
 * nothing more starts, the statements still running are cancelled, and that failure is thrown.
 */
export async function applySchemaObjects(target: pg.Client, phase: SchemaPhase, objects: SchemaObject[], opts: ApplyOptions = {}): Promise<void> {
  let handed = phase === 'post-data' ? (opts.handedOver ?? null) : null;
  /** Waits for the handed-over build; once built, post-data leaves its object out (from index `from` on). */
  const takeBack = async (list: SchemaObject[], from: number): Promise<void> => {
    const h = handed;
    handed = null;
    if (!h || !(await h.done)) return;
    const at = list.findIndex((o, n) => n >= from && o.key === h.key);
    if (at >= 0) list.splice(at, 1);
  };
  if (objects.length === 0) return takeBack(objects, 0);
  const { log } = opts;
  const extra: pg.Client[] = [];
  await target.query(SESSION_SETUP);
  try {
    if (phase === 'pre-data') {
      await target.query('BEGIN');
      try {
        for (const o of objects) await runObject(target, o);
        await target.query('COMMIT');
      } catch (err) {
        await target.query('ROLLBACK').catch(() => {});
        throw err;
      }
    } else {
      let parallel = opts.connect ? Math.max(1, opts.parallel ?? DEFAULT_SCHEMA_PARALLEL) : 1;
      const list = [...objects];
      for (let i = 0; i < list.length; ) {
        // Only the first run of parallel objects goes on beside a handed-over build.
        if (handed && (i > 0 || !list[0]!.lock)) await takeBack(list, i);
        let end = i;
        while (end < list.length && list[end]!.lock) end++;
        if (end === i) {
          await runObject(target, list[i++]!, log);
          continue;
        }
        const run = list.slice(i, end);
        while (extra.length + 1 < Math.min(parallel, run.length)) {
          let session: pg.Client | null = null;
          try {
            session = await opts.connect!();
            await session.query(SESSION_SETUP);
            extra.push(session);
          } catch (err) {
            await (session as pg.Client | null)?.end().catch(() => {});
            // A target short of connections builds on the sessions it gave: slower, not wrong.
            parallel = extra.length + 1;
            log?.warn({ err: describeError(err), sessions: parallel }, 'schema copy: cannot open another target session; building on fewer');
          }
        }
        const sessions = [target, ...extra].slice(0, Math.min(parallel, run.length));
        log?.info({ objects: run.length, sessions: sessions.length }, 'schema copy: post-data objects that may run at once');
        for (const session of sessions) await session.query(serialBuilds(sessions.length > 1 || handed !== null));
        const beside = handed;
        handed = null;
        await runConcurrently(sessions, run, opts, beside);
        i = end;
        // Built beside the run: not again later.
        if (beside && (await beside.done)) {
          const at = list.findIndex((o, n) => n >= i && o.key === beside.key);
          if (at >= 0) list.splice(at, 1);
        }
      }
      await takeBack(list, list.length);
    }
  } finally {
    await target.query(`RESET search_path; RESET check_function_bodies; ${serialBuilds(false)}`).catch(() => {});
    for (const session of extra) await session.end().catch(() => {});
  }
  log?.info({ phase, objects: objects.length }, `schema copy: ${phase} applied`);
}

/**
 * Runs `objects` (all with a {@link SchemaObject.lock}) on `sessions` at once, each object as
 * soon as a session is free and its family allows it (see {@link applySchemaObjects}).
 */
async function runConcurrently(sessions: pg.Client[], objects: SchemaObject[], opts: ApplyOptions, beside: HandedOver | null = null): Promise<void> {
  const pending = [...objects];
  /** Per family: statements running, and whether one of them runs alone. */
  const running = new Map<string, { count: number; alone: boolean }>();
  const busy = new Set<pg.Client>();
  let failure: { err: unknown } | null = null;
  let waiters: (() => void)[] = [];
  const changed = (): Promise<void> => new Promise((resolve) => waiters.push(resolve));
  const notify = (): void => {
    const woken = waiters;
    waiters = [];
    for (const w of woken) w();
  };
  const take = (): SchemaObject | undefined => {
    const blocked = new Set<string>();
    for (const [index, o] of pending.entries()) {
      const { family, shared } = o.lock!;
      if (blocked.has(family)) continue;
      const now = running.get(family);
      if (!now || (shared && !now.alone)) {
        running.set(family, { count: (now?.count ?? 0) + 1, alone: !shared });
        return pending.splice(index, 1)[0];
      }
      blocked.add(family);
    }
    return undefined;
  };
  const pids = await Promise.all(sessions.map(async (s) => (await s.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid));
  /** Cancels the other sessions' statements, again until they have ended (a cancel reaching a session before its statement is lost). */
  const cancelOthers = async (from: pg.Client | null): Promise<void> => {
    let helper: pg.Client | null = null;
    try {
      for (let others = [...busy].filter((s) => s !== from); others.length > 0; others = [...busy].filter((s) => s !== from)) {
        const ended = changed();
        const params = [others.map((s) => pids[sessions.indexOf(s)]!)];
        const sql = 'SELECT pg_cancel_backend(pid) FROM unnest($1::int[]) AS pid';
        await (from ? from.query(sql, params) : Promise.reject(new Error('no session'))).catch(async () => {
          helper ??= await opts.connect!();
          await helper.query(sql, params);
        });
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([ended, new Promise((resolve) => (timer = setTimeout(resolve, 1_000)))]);
        clearTimeout(timer);
      }
    } catch (err) {
      opts.log?.warn({ err: describeError(err) }, 'schema copy: could not cancel the statements still running after a failure');
    } finally {
      await (helper as pg.Client | null)?.end().catch(() => {});
    }
  };
  // A build beside the run: its family is busy until it ends; if it was cancelled, its object is built here.
  let besideEnded = !beside;
  const besideDone = (async () => {
    if (!beside) return;
    const at = pending.findIndex((o) => o.key === beside.key);
    const mine = at >= 0 ? pending.splice(at, 1)[0]! : null;
    const now = running.get(beside.lock.family);
    running.set(beside.lock.family, { count: (now?.count ?? 0) + 1, alone: !beside.lock.shared || (now?.alone ?? false) });
    let err: { err: unknown } | null = null;
    const built = await beside.done.catch((e: unknown) => ((err = { err: e }), true));
    const family = running.get(beside.lock.family)!;
    if (--family.count === 0) running.delete(beside.lock.family);
    if (!built && mine) pending.unshift(mine);
    besideEnded = true;
    if (err && !failure) {
      failure = err;
      await cancelOthers(null);
    }
    notify();
  })();
  const lane = async (session: pg.Client): Promise<void> => {
    while (!failure) {
      const o = take();
      if (!o) {
        if (pending.length === 0 && besideEnded) return;
        await changed();
        continue;
      }
      busy.add(session);
      try {
        await runObject(session, o, opts.log);
      } catch (err) {
        busy.delete(session);
        if (!failure) {
          failure = { err };
          await cancelOthers(session);
        }
      } finally {
        busy.delete(session);
        const family = running.get(o.lock!.family)!;
        if (--family.count === 0) running.delete(o.lock!.family);
        notify();
      }
    }
  };
  await Promise.all(sessions.map(lane));
  // After a failure here, the build beside is not waited for (the caller ends its session).
  if (!failure) await besideDone;
  if (failure) throw (failure as { err: unknown }).err;
}

/**
 * One phase of schema copy inside `pgferry start`. Pre-data fails before anything is created when
 * any object (of either phase) conflicts, so a migration never stops after a long copy for a
 * problem that was visible at the start. Returns the plan it ran.
 */
export async function copySchemaPhase(opts: ApplyOptions & { source: pg.Client; target: pg.Client; tables: TableName[]; phase: SchemaPhase; log: Logger }): Promise<SchemaPlan> {
  const plan = await planSchemaCopy(opts.source, opts.target, opts.tables);
  assertNoConflicts(plan);
  if (opts.phase === 'pre-data') for (const note of plan.notes) opts.log.warn({ note }, 'schema copy: not copied');
  const objects = opts.phase === 'pre-data' ? plan.preData : plan.postData.filter((o) => !o.whileStreaming);
  await applySchemaObjects(opts.target, opts.phase, objects, { log: opts.log, parallel: opts.parallel, connect: opts.connect, handedOver: opts.handedOver });
  return plan;
}

/**
 * Schema copy's last step, run by `pgferry start` once streaming has started (again at each start
 * until it has succeeded): the post-data objects marked {@link SchemaObject.whileStreaming}, one
 * at a time on `target`, so apply keeps the other cores. Foreign keys still NOT VALID are
 * validated; tables never analyzed on the target (manually or by autovacuum) are analyzed.
 * Starts nothing more once `signal` is aborted (the caller cancels the statement running).
 * Returns how many objects were planned.
 */
export async function finishSchemaWhileStreaming(opts: {
  source: pg.Client;
  target: pg.Client;
  tables: TableName[];
  log: Logger;
  signal: AbortSignal;
  /** Runs a foreign key's validation where it sees only whole source transactions (see Migration). */
  wholeTransactions?: <T>(read: () => Promise<T>) => Promise<T>;
}): Promise<number> {
  const plan = await planSchemaCopy(opts.source, opts.target, opts.tables);
  const { rows } = await opts.target.query<{ schema: string; name: string }>(
    `SELECT schemaname AS schema, relname AS name FROM pg_catalog.pg_stat_user_tables WHERE last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL`,
  );
  const analyzed = new Set(rows.map((r) => `table ${qname(r.schema, r.name)}`));
  // A foreign key the target lacks altogether (schema copy turned on after the copy) is not validated.
  const missing = new Set(plan.postData.map((o) => `validation of ${o.key}`));
  const objects = plan.postData.filter((o) => o.whileStreaming && !missing.has(o.key) && !(o.key.startsWith('analyze ') && analyzed.has(o.table ?? '')));
  await opts.target.query(SESSION_SETUP);
  for (const o of objects) {
    if (opts.signal.aborted) break;
    if (opts.wholeTransactions && o.key.startsWith('validation of ')) await opts.wholeTransactions(() => runObject(opts.target, o, opts.log));
    else await runObject(opts.target, o, opts.log);
  }
  return objects.length;
}

/**
 * Builds a table's own indexes and primary key, unique, check and exclusion constraints as soon
 * as its copy is done, on one extra target session, while other tables are still copying;
 * post-data then finds them built and skips them (and builds what this did not get to). Foreign
 * keys, `ANALYZE`, objects that call a function post-data creates, and everything else wait for
 * post-data. An object is built at most once per builder (a copy started again keeps them).
 */
export class EarlyIndexBuilder {
  private readonly byTable = new Map<string, SchemaObject[]>();
  private readonly built = new Set<string>();
  private chain: Promise<void> = Promise.resolve();
  private failure: { err: unknown } | null = null;
  private session: pg.Client | null = null;
  private closed = false;
  /** The watcher cancelled the build running then (it was waiting for a lock). */
  private cancelled = false;
  /** The object being built now. */
  private running: SchemaObject | null = null;
  /** Keys of the objects built. */
  private readonly done = new Set<string>();

  constructor(
    plan: SchemaPlan,
    private readonly connect: () => Promise<pg.Client>,
    private readonly log: Logger,
  ) {
    // Functions post-data creates (after the copy): an expression index or a check constraint
    // that calls one must wait for post-data too. Matched by name, so a false match only means a
    // later build.
    const functions = plan.postData.flatMap((o) => {
      const m = /^(?:function|procedure) .*?\."((?:[^"]|"")*)"\(/.exec(o.key);
      return m ? [m[1]!.replace(/""/g, '"')] : [];
    });
    const callsPostDataFunction = (o: SchemaObject): boolean => o.statements.some((sql) => functions.some((f) => sql.includes(`${f}(`) || sql.includes(`"${f.replace(/"/g, '""')}"(`)));
    for (const o of plan.postData) {
      if (!o.lock || !o.table || o.whileStreaming || callsPostDataFunction(o)) continue;
      const list = this.byTable.get(o.table) ?? [];
      list.push(o);
      this.byTable.set(o.table, list);
    }
  }

  /** Queues the table's objects; returns at once. */
  tableCopied(table: TableName): void {
    const objects = (this.byTable.get(`table ${qname(table.schema, table.name)}`) ?? []).filter((o) => !this.built.has(o.key));
    if (objects.length === 0) return;
    for (const o of objects) this.built.add(o.key);
    // One link per object: once the copy is done, finish() waits for the build running then only,
    // and post-data builds the rest of the table's objects in parallel.
    for (const o of objects) this.chain = this.chain.then(() => this.build(o));
  }

  private async build(o: SchemaObject): Promise<void> {
    if (this.failure || this.closed) return;
    try {
      if (!this.session) {
        this.session = await this.connect();
        await this.session.query(`${SESSION_SETUP}; ${serialBuilds(true)}`);
      }
    } catch (err) {
      // A target short of connections builds everything in post-data: later, not wrong.
      this.closed = true;
      this.log.warn({ err: describeError(err) }, 'schema copy: cannot open a session to build indexes during the copy; building them after it');
      return;
    }
    if (this.closed) return; // handed over while connecting: post-data builds it
    this.running = o;
    try {
      await runObject(this.session, o, this.log);
      this.done.add(o.key);
    } catch (err) {
      // Cancelled by the watcher while waiting for a lock: post-data builds what is left.
      if (!this.cancelled) this.failure ??= { err };
    } finally {
      this.running = null;
    }
  }

  /**
   * Once the copy is done: starts no more builds and hands the one running now (if any) over to
   * post-data, which goes on beside it (see {@link HandedOver}) instead of waiting for it.
   */
  handOver(): HandedOver | null {
    this.closed = true;
    if (this.failure) throw this.failure.err;
    const o = this.running;
    if (!o) return null; // the chain's other links return at once now
    const done = this.finish().then(() => this.done.has(o.key));
    done.catch(() => {}); // awaited by post-data; a rejection before that is not unhandled
    return { key: o.key, lock: o.lock!, done };
  }

  /**
   * Waits for the object being built now (starting no more); throws the first failure. A build
   * found waiting for a lock (another session's, on the target) is cancelled and left to
   * post-data, which builds in parallel and stops everything on the first failure: waiting here
   * could last for ever.
   */
  private async finish(): Promise<void> {
    this.closed = true;
    let settled = false;
    const done = this.chain.then(() => {
      settled = true;
    });
    let watcher: pg.Client | null = null;
    try {
      while (!settled) {
        await Promise.race([done, new Promise((resolve) => setTimeout(resolve, LOCK_CHECK_MS))]);
        const pid = (this.session as { processID?: number } | null)?.processID;
        if (settled || !pid) continue;
        try {
          watcher ??= await this.connect();
          const { rows } = await watcher.query<{ waiting: boolean }>(`SELECT wait_event_type = 'Lock' AS waiting FROM pg_catalog.pg_stat_activity WHERE pid = $1`, [pid]);
          if (rows[0]?.waiting && !settled) {
            // Again while it still waits: a cancel that reaches the session between statements is lost.
            if (!this.cancelled) this.log.warn({ pid }, 'schema copy: an index build during the copy is waiting for a lock on the target; cancelled, post-data builds it');
            this.cancelled = true;
            await watcher.query('SELECT pg_catalog.pg_cancel_backend($1)', [pid]);
          }
        } catch {
          // No session to look with: keep waiting, as before.
        }
      }
    } finally {
      await watcher?.end().catch(() => {});
    }
    if (this.failure) throw this.failure.err;
  }

  /**
   * Starts no more builds, cancels the one running (a stop, a failed copy or post-data: again until
   * it has ended, since the server finishes a statement whose client is gone, and commits it), and
   * closes the session.
   */
  async close(): Promise<void> {
    this.closed = true;
    const pid = (this.session as { processID?: number } | null)?.processID ?? null;
    if (this.running) this.cancelled = true; // a cancelled build is not a failure
    await cancelUntilEnded(this.connect, () => (this.running ? pid : null), this.chain);
    const session = this.session;
    this.session = null;
    await session?.end().catch(() => {});
    await this.chain;
  }

}
