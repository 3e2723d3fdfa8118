import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { Applier } from '../../src/apply/applier.js';
import { Lanes, resolvePreparedShares, shareId, sharesPending, sharesUnderProgress } from '../../src/apply/lanes.js';
import type { QueuedCommit } from '../../src/apply/applier.js';
import { SHARES_LOCK, ensureStateSchema, lockShares, unlockShares } from '../../src/apply/state-store.js';
import { parseLsn } from '../../src/protocol/lsn.js';
import { preflightTarget } from '../../src/apply/preflight.js';
import { cleanup } from '../../src/cleanup.js';
import { loadSettings } from '../../src/config/settings.js';
import { createLogger } from '../../src/observability/logger.js';
import { createTestDatabases, serverUrl, waitFor, type TestDatabases } from '../support/databases.js';
import { scrape, valueOf } from '../support/metrics.js';
import { startInProcess, waitForIdentical } from '../support/pgferry.js';

const TABLES = ['public.items', 'public.notes'];

async function metric(app: App, name: string): Promise<number> {
  return valueOf((await scrape(app)).samples, name) ?? 0;
}

describe('--apply-sessions 2: large groups applied on two target sessions', () => {
  let db: TestDatabases;
  let app: App | undefined;

  beforeAll(async () => {
    db = await createTestDatabases('lanes');
    await db.source.query(`CREATE TABLE public.items (id bigint PRIMARY KEY, code text NOT NULL UNIQUE, qty int NOT NULL, body jsonb);
      CREATE TABLE public.notes (line text);
      CREATE TABLE public.staging (id bigint PRIMARY KEY, v text NOT NULL);
      INSERT INTO public.staging SELECT g, 'old' FROM generate_series(1, 1000) g;
      ALTER TABLE public.notes REPLICA IDENTITY FULL; -- no key: its changes stay on the main session
      INSERT INTO public.items SELECT g, 'c' || g, g % 7, jsonb_build_object('g', g) FROM generate_series(1, 5000) g;`);
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub`, applySessions: '2' });
    await waitFor(async () => (await db.target.query(`SELECT 1 FROM pgferry.migration WHERE slot = $1 AND phase = 'streaming'`, [db.slot]).catch(() => ({ rowCount: 0 }))).rowCount === 1, 'streaming');
    // Foreign-key validation (here none) and ANALYZE done: they would not change where groups apply.
    await waitFor(async () => app!.status.schemaFinishing?.state === 'done', 'schema finishing');
  });

  afterAll(async () => {
    await app?.stop();
    await db?.drop();
  });

  it('applies a large transaction spread over both sessions, exactly once', async () => {
    await db.source.query(`BEGIN;
      INSERT INTO public.items SELECT g, 'c' || g, 0, NULL FROM generate_series(5001, 25000) g;
      UPDATE public.items SET qty = qty + 1, body = jsonb_build_object('u', id) WHERE id % 3 = 0;
      DELETE FROM public.items WHERE id % 5 = 0;
      INSERT INTO public.notes SELECT 'n' || g FROM generate_series(1, 100) g;
      COMMIT`);
    await waitForIdentical(db.source, db.target, TABLES);
    expect(await metric(app!, 'pgferry_apply_spread_groups_total')).toBeGreaterThan(0);
    expect(await metric(app!, 'pgferry_apply_spread_retries_total')).toBe(0);
    const { rows } = await db.target.query(`SELECT count(*)::int AS n FROM pg_prepared_xacts WHERE database = current_database()`);
    expect(rows[0].n).toBe(0);
  });

  it('applies again on one session a spread group whose sessions would wait for each other, or that truncates', async () => {
    const before = await metric(app!, 'pgferry_apply_spread_retries_total');
    // After 1,000 changes the group spreads; then 40 rows give their unique code to 40 new rows:
    // a new row on the other session than the deleted one waits for (or collides with) it.
    await db.source.query(`BEGIN;
      UPDATE public.items SET qty = qty + 1 WHERE id <= 2000;
      DELETE FROM public.items WHERE id BETWEEN 3001 AND 3040;
      INSERT INTO public.items SELECT g, 'c' || (g - 100000), 9, NULL FROM generate_series(103001, 103040) g;
      COMMIT`);
    await waitForIdentical(db.source, db.target, TABLES);
    // A lock timeout, a deadlock or a unique violation between the sessions: all replayed on one session.
    expect(await metric(app!, 'pgferry_apply_spread_retries_total')).toBeGreaterThan(before);
    const afterSwap = await metric(app!, 'pgferry_apply_spread_retries_total');
    await db.source.query(`BEGIN;
      UPDATE public.items SET qty = qty + 1 WHERE id <= 2000;
      TRUNCATE public.notes;
      INSERT INTO public.notes VALUES ('after truncate');
      COMMIT`);
    await waitForIdentical(db.source, db.target, TABLES);
    expect(await metric(app!, 'pgferry_apply_spread_retries_total')).toBeGreaterThan(afterSwap);
    expect(app!.status.phase).toBe('streaming');
  });

  it("applies again on one session a spread group in which a table's key changes (its rows would route by other values)", async () => {
    const before = await metric(app!, 'pgferry_apply_spread_retries_total');
    // Rows inserted on the session their id picks, then updated by code: without the retry, an
    // update could run on the other session, which does not see the uncommitted insert.
    await db.source.query(`BEGIN;
      INSERT INTO public.items SELECT g, 'k' || g, 1, NULL FROM generate_series(200001, 202000) g;
      ALTER TABLE public.items REPLICA IDENTITY USING INDEX items_code_key;
      UPDATE public.items SET qty = 2 WHERE id > 200000;
      COMMIT;
      ALTER TABLE public.items REPLICA IDENTITY DEFAULT`);
    await waitForIdentical(db.source, db.target, TABLES);
    expect(await metric(app!, 'pgferry_apply_spread_retries_total')).toBeGreaterThan(before);
    expect(app!.status.phase).toBe('streaming');
  });

  it('applies a reload (TRUNCATE, then a large insert, in one transaction) on one session, without a retry', async () => {
    const before = await metric(app!, 'pgferry_apply_spread_retries_total');
    await db.source.query(`BEGIN; TRUNCATE public.staging; INSERT INTO public.staging SELECT g, 'new' FROM generate_series(1, 5000) g; COMMIT`);
    await waitForIdentical(db.source, db.target, ['public.staging']);
    // Spread, its inserts on the other session would wait for the TRUNCATE's lock and time out.
    expect(await metric(app!, 'pgferry_apply_spread_retries_total')).toBe(before);
  });

  it('applies again on one session a spread group that waits for a lock held outside pgferry, and waits for it there', async () => {
    const before = await metric(app!, 'pgferry_apply_spread_retries_total');
    const locker = new pg.Client({ connectionString: db.targetUrl });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      expect((await locker.query(`SELECT 1 FROM public.items WHERE id = 1501 FOR UPDATE`)).rowCount).toBe(1);
      // The locked row's change comes after the group spread (its sessions then time out on locks).
      await db.source.query(`BEGIN; UPDATE public.items SET qty = qty + 1 WHERE id BETWEEN 1 AND 1400 OR id BETWEEN 1601 AND 2000;
        UPDATE public.items SET qty = qty + 1 WHERE id = 1501; COMMIT`);
      // The spread group gives up after its lock timeout; the one-session replay waits as long as it takes.
      await waitFor(async () => (await metric(app!, 'pgferry_apply_spread_retries_total')) > before, 'a retry on one session');
      await waitFor(async () => (await db.target.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rowCount === 1, 'the replay waiting');
      await locker.query('COMMIT');
    } finally {
      await locker.end();
    }
    await waitForIdentical(db.source, db.target, TABLES);
  });
});

describe('prepared shares left by an interrupted run', () => {
  let db: TestDatabases;
  const sessions: pg.Client[] = [];

  beforeAll(async () => {
    db = await createTestDatabases('shares');
    await db.target.query(`CREATE TABLE public.t (id int PRIMARY KEY)`);
  });

  afterAll(async () => {
    for (const c of sessions) await c.end().catch(() => {});
    await db.target.query(`SELECT gid FROM pg_prepared_xacts WHERE database = current_database()`).then(async ({ rows }) => {
      for (const r of rows) await db.target.query(`ROLLBACK PREPARED '${r.gid}'`);
    });
    await db?.drop();
  });

  it('commits those of groups whose progress committed, rolls back the others, leaves other slots alone', async () => {
    const prepare = async (gid: string, id: number): Promise<void> => {
      const c = new pg.Client({ connectionString: db.targetUrl });
      await c.connect();
      sessions.push(c);
      await c.query(`BEGIN; INSERT INTO public.t VALUES (${id}); PREPARE TRANSACTION '${gid}'`);
    };
    await prepare(shareId(db.slot, 0x2000n, 1), 1); // group committed (at or below the progress)
    await prepare(shareId(db.slot, 0x3000n, 1), 2); // exactly the progress: committed
    await prepare(shareId(db.slot, 0x3001n, 2), 3); // after it: never committed
    await prepare(shareId(`${db.slot}_other`, 0x1000n, 1), 4); // another migration's
    const settled = await resolvePreparedShares(db.target, db.slot, 0x3000n, createLogger('silent', { pretty: false }));
    expect(settled).toEqual({ committed: 2, rolledBack: 1 });
    const { rows } = await db.target.query<{ id: number }>(`SELECT id FROM public.t ORDER BY id`);
    expect(rows.map((r) => r.id)).toEqual([1, 2]);
    const left = await db.target.query<{ gid: string }>(`SELECT gid FROM pg_prepared_xacts WHERE database = current_database()`);
    expect(left.rows.map((r) => r.gid)).toEqual([shareId(`${db.slot}_other`, 0x1000n, 1)]);
  });

  it('are settled by pgferry cleanup (rolled back when no progress is stored)', async () => {
    const c = new pg.Client({ connectionString: db.targetUrl });
    await c.connect();
    sessions.push(c);
    await c.query(`BEGIN; INSERT INTO public.t VALUES (5); PREPARE TRANSACTION '${shareId(db.slot, 0x5000n, 1)}'`);
    const done = await cleanup(loadSettings({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub` }, {}));
    expect(done).toContain(`target: settled 1 prepared transaction(s) of slot ${db.slot} (0 committed, 1 rolled back)`);
    const { rows } = await db.target.query(`SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND starts_with(gid, $1)`, [`pgferry:${db.slot}:`]);
    expect(rows).toEqual([]);
    expect((await db.target.query(`SELECT 1 FROM public.t WHERE id = 5`)).rowCount).toBe(0);
  });

  /**
   * A group of 3,000 inserts into `table` (created here) spread over a main and a helper session,
   * handed to its commit; the main session stops before its first statement starting with
   * `gateAt` until `release` is called. The progress row starts at 0/10; the group ends at 0/100.
   */
  async function spreadGroup(table: string, gateAt: string, helpers = 1): Promise<{ lanes: Lanes; done: QueuedCommit; atGate: Promise<void>; release: () => void }> {
    await db.target.query(`CREATE TABLE public.${table} (id int PRIMARY KEY)`);
    await ensureStateSchema(db.target);
    await db.target.query(`DELETE FROM pgferry.migration WHERE slot = $1`, [db.slot]);
    await db.target.query(`INSERT INTO pgferry.migration (slot, phase, applied_lsn) VALUES ($1, 'streaming', '0/10')`, [db.slot]);
    const connect = async (): Promise<pg.Client> => {
      const c = new pg.Client({ connectionString: db.targetUrl });
      await c.connect();
      sessions.push(c);
      return c;
    };
    const mainClient = await connect();
    let reached!: () => void;
    const atGate = new Promise<void>((r) => (reached = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const query = mainClient.query.bind(mainClient) as (...args: unknown[]) => unknown;
    (mainClient as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      if (typeof args[0] === 'string' && args[0].startsWith(gateAt)) {
        reached();
        return gate.then(() => query(...args));
      }
      return query(...args);
    };
    const log = createLogger('silent', { pretty: false });
    const lanes = new Lanes(new Applier(mainClient, db.slot, log), db.slot);
    for (let h = 0; h < helpers; h++) lanes.addSession(new Applier(await connect(), db.slot, log));
    await lanes.init();
    lanes.relation({ tag: 'relation', relationOid: 1, namespace: 'public', name: table, replicaIdentity: 'default', columns: [{ name: 'id', typeOid: 23, typeModifier: -1, isKey: true }] });
    for (let i = 1; i <= 3_000; i++) await lanes.change({ tag: 'insert', relationOid: 1, newTuple: [String(i)] });
    expect(lanes.endTransaction(0x100n)).toBe(true);
    const done = await lanes.commitGroup();
    expect(done?.sessions).toBe(helpers + 1);
    return { lanes, done: done!, atGate, release };
  }

  const applied = async (): Promise<string> => (await db.target.query<{ lsn: string }>(`SELECT applied_lsn::text AS lsn FROM pgferry.migration WHERE slot = $1`, [db.slot])).rows[0]!.lsn;
  const rowsOf = async (table: string): Promise<number> => (await db.target.query<{ n: number }>(`SELECT count(*)::int AS n FROM public.${table}`)).rows[0]!.n;

  it("shows readers a spread group's shares pending between its progress row and their commits", async () => {
    // The main session is held at its first COMMIT PREPARED, right after the group's COMMIT.
    const { lanes, done, atGate, release } = await spreadGroup('p', 'COMMIT PREPARED');
    await atGate;
    try {
      expect(await applied()).toBe('0/100');
      // Not all of the group's rows are visible yet: verify and foreign-key validation wait for this.
      expect(await rowsOf('p')).toBeLessThan(3_000);
      expect(await sharesPending(db.target, db.slot, 0x100n)).toBe(true);
      expect(await sharesPending(db.target, db.slot, 0xffn)).toBe(false);
      expect(await sharesUnderProgress(db.target, db.slot)).toBe(true);
      expect(lanes.spreadInvolved).toBe(true);
    } finally {
      release();
    }
    await done.committed;
    expect(await sharesPending(db.target, db.slot, 0x100n)).toBe(false);
    expect(await sharesUnderProgress(db.target, db.slot)).toBe(false);
    expect(lanes.spreadInvolved).toBe(false);
    expect(await rowsOf('p')).toBe(3_000);
  });

  it('never lets a run that took over settle the shares of a group another run is committing', async () => {
    // The main session holds the shares lock and is stopped at its first COMMIT PREPARED.
    const { done, atGate, release } = await spreadGroup('q', 'COMMIT PREPARED');
    await atGate;
    const other = new pg.Client({ connectionString: db.targetUrl });
    await other.connect();
    sessions.push(other);
    const pid = (other as unknown as { processID: number }).processID;
    // What a second pgferry does at its start: lock, read the progress, settle.
    const takeover = (async () => {
      await lockShares(other, db.slot);
      const settled = await resolvePreparedShares(other, db.slot, parseLsn(await applied()));
      await unlockShares(other, db.slot);
      return settled;
    })();
    try {
      await waitFor(async () => (await db.target.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'`, [pid])).rowCount === 1, 'the takeover waiting');
    } finally {
      release();
    }
    await done.committed;
    expect(await takeover).toEqual({ committed: 0, rolledBack: 0 });
    expect(await rowsOf('q')).toBe(3_000);
  });

  it('never commits the progress row of a group whose shares another run settled', async () => {
    // Another run settles (rolls back) the shares after they are prepared, before the main session locks.
    const { lanes, done, atGate, release } = await spreadGroup('r', 'SELECT pg_catalog.pg_advisory_lock');
    await atGate;
    try {
      expect(await resolvePreparedShares(db.target, db.slot, parseLsn(await applied()))).toEqual({ committed: 0, rolledBack: 1 });
    } finally {
      release();
    }
    await expect(done.committed).rejects.toThrow('were settled by another run');
    await lanes.rollback();
    expect(await applied()).toBe('0/10');
    expect(await rowsOf('r')).toBe(0);
    await db.target.query(`DELETE FROM pgferry.migration WHERE slot = $1`, [db.slot]);
  });

  it('rolls back the shares left of a group whose other shares another run settled (nobody else would)', async () => {
    // Another run settled one share (prepared before its start); the second was prepared after.
    const { lanes, done, atGate, release } = await spreadGroup('r2', 'SELECT pg_catalog.pg_advisory_lock', 2);
    const prepared = async (): Promise<string[]> => (await db.target.query<{ gid: string }>(`SELECT gid FROM pg_prepared_xacts WHERE starts_with(gid, $1) ORDER BY gid`, [`pgferry:${db.slot}:`])).rows.map((r) => r.gid);
    await atGate;
    try {
      const gids = await prepared();
      expect(gids).toHaveLength(2);
      // Shares above the progress row: no reader can see a progress row without their rows.
      expect(await sharesUnderProgress(db.target, db.slot)).toBe(false);
      await db.target.query(`ROLLBACK PREPARED '${gids[0]}'`);
    } finally {
      release();
    }
    await expect(done.committed).rejects.toThrow('were settled by another run');
    expect(await prepared()).toEqual([]);
    await lanes.rollback();
    expect(await applied()).toBe('0/10');
    expect(await rowsOf('r2')).toBe(0);
    // The shares lock went with the failure: a start can take it at once.
    const { rows: [free] } = await db.target.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock($1::int4, hashtext($2)) AS ok`, [SHARES_LOCK, db.slot]);
    expect(free!.ok).toBe(true);
    await db.target.query(`SELECT pg_advisory_unlock($1::int4, hashtext($2))`, [SHARES_LOCK, db.slot]);
    await db.target.query(`DELETE FROM pgferry.migration WHERE slot = $1`, [db.slot]);
  });

  it('refuses --apply-sessions above 1 when the target allows no prepared transactions', async () => {
    // The source server (PostgreSQL 14 here) keeps the default max_prepared_transactions = 0.
    const c = new pg.Client({ connectionString: serverUrl('source', 'postgres') });
    await c.connect();
    try {
      await expect(preflightTarget(c, [], { mustBeEmpty: false, applySessions: 3 })).rejects.toThrow(
        'target: max_prepared_transactions is 0, and --apply-sessions 3 needs at least 2; raise it on the target (postgresql.conf, then restart) or use --apply-sessions 1',
      );
      await expect(preflightTarget(c, [], { mustBeEmpty: false, applySessions: 1 })).resolves.toBeUndefined();
    } finally {
      await c.end();
    }
  });
});

describe('--apply-sessions 2 under backlog: groups in a row touching the same rows, captured DDL', () => {
  let db: TestDatabases;
  let app: App | undefined;

  beforeAll(async () => {
    db = await createTestDatabases('lanes2');
    await db.source.query(`CREATE TABLE public.items (id bigint PRIMARY KEY, qty int NOT NULL);
      INSERT INTO public.items SELECT g, 0 FROM generate_series(1, 50000) g;
      CREATE TABLE public.notes (line text);
      ALTER TABLE public.notes REPLICA IDENTITY FULL;
      INSERT INTO public.notes SELECT 'n' || g FROM generate_series(1, 4000) g;
      CREATE TABLE public.junk (id int PRIMARY KEY);
      INSERT INTO public.junk VALUES (1);`);
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub`, applySessions: '2', captureDdl: 'true' });
    await waitFor(async () => (await db.target.query(`SELECT 1 FROM pgferry.migration WHERE slot = $1 AND phase = 'streaming'`, [db.slot]).catch(() => ({ rowCount: 0 }))).rowCount === 1, 'streaming');
  });

  afterAll(async () => {
    await app?.stop();
    await db.target.query(`SELECT gid FROM pg_prepared_xacts WHERE database = current_database()`).then(async ({ rows }) => {
      for (const r of rows) await db.target.query(`ROLLBACK PREPARED '${r.gid}'`);
    });
    await db?.drop();
  });

  it('applies the next group only after the spread one committed (no row missing, no failure)', async () => {
    // The keyless table keeps the main session busy while the helper runs ahead into the next group,
    // whose updates must see the rows the previous group inserted on it.
    for (let round = 0; round < 3; round++) {
      const base = 200_000 + round * 100_000;
      await db.source.query(`BEGIN; INSERT INTO public.items SELECT g, 0 FROM generate_series(${base}, ${base + 40_000}) g;
          UPDATE public.notes SET line = line || 'x' WHERE line < 'n2'; COMMIT;
        BEGIN; UPDATE public.items SET qty = qty + 1 WHERE id BETWEEN ${base} AND ${base + 40_000}; COMMIT;`);
      await waitForIdentical(db.source, db.target, ['public.items', 'public.notes']);
    }
    expect(valueOf((await scrape(app!)).samples, 'pgferry_errors_total', { kind: 'apply' }) ?? 0).toBe(0);
    expect(await metric(app!, 'pgferry_apply_spread_groups_total')).toBeGreaterThan(0);
  });

  it('does not hang when a group applied on one session is followed by a spread one touching its rows', async () => {
    await db.source.query(`BEGIN; UPDATE public.items SET qty = qty + 1 WHERE id BETWEEN 100 AND 1600; TRUNCATE public.junk;
        UPDATE public.notes SET line = line || 'y' WHERE line < 'n12';
        UPDATE public.items SET qty = qty + 1 WHERE id BETWEEN 42 AND 61; COMMIT;
      BEGIN; UPDATE public.items SET qty = qty + 1 WHERE id BETWEEN 20001 AND 21100;
        UPDATE public.items SET qty = qty + 1 WHERE id BETWEEN 42 AND 61; COMMIT;`);
    await waitForIdentical(db.source, db.target, ['public.items', 'public.notes', 'public.junk'], 60_000);
  });

  it('keeps a group with captured DDL on one session (a table it creates does not exist for the others yet)', async () => {
    await db.source.query(`BEGIN; CREATE TABLE public.fresh (id bigint PRIMARY KEY, v text);
      INSERT INTO public.fresh SELECT g, 'v' FROM generate_series(1, 5000) g; COMMIT`);
    await waitForIdentical(db.source, db.target, ['public.items', 'public.fresh'], 60_000);
    expect(valueOf((await scrape(app!)).samples, 'pgferry_errors_total', { kind: 'apply' }) ?? 0).toBe(0);
  });
});
