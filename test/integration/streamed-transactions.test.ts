import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { captureLogger, startInProcess, waitForIdentical } from '../support/pgferry.js';
import { rowCount } from '../support/compare.js';
import { alwaysParentCheck } from '../support/schema-fixture.js';
import { MAX_STREAMED, StreamedTransactions } from '../../src/apply/streamed.js';
import { Applier } from '../../src/apply/applier.js';

const TABLES = ['items', 'log'];

/**
 * Large source transactions are streamed by the server while they run (pgoutput protocol 2) and
 * applied as they arrive, each on a target session of its own, committed at their Stream Commit.
 * The walsender's decoding memory is set to its minimum through the source URL, so a few thousand
 * rows are "large".
 */
describe('large transactions applied while they run on the source', () => {
  let db: TestDatabases;
  let app: App | undefined;
  let writer: pg.Client;
  const lines: string[] = [];
  let sourceUrl: string;

  const start = async (opts: { captureDdl?: boolean; streamLargeTransactions?: boolean } = {}): Promise<App> => {
    const started = await startInProcess({ source: sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub`, ...opts }, { log: captureLogger(lines, 'warn') });
    await waitFor(() => started.status.phase === 'streaming', 'streaming', 110_000);
    return started;
  };
  /** Transactions the server has streamed for this slot so far. */
  const streamedCount = async (): Promise<number> =>
    Number((await db.source.query<{ n: string }>(`SELECT stream_txns::text AS n FROM pg_stat_replication_slots WHERE slot_name = $1`, [db.slot])).rows[0]?.n ?? 0);
  /** pgferry's target sessions inside an open transaction (a streamed transaction's session between blocks). */
  const openSessions = async (): Promise<number> =>
    (await db.target.query(`SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pgferry' AND state = 'idle in transaction'`, [db.name])).rowCount ?? 0;
  const marker = async (id: number): Promise<void> => {
    await db.source.query(`INSERT INTO log (id, note) VALUES ($1, 'marker')`, [id]);
    await waitFor(async () => (await db.target.query(`SELECT 1 FROM log WHERE id = $1`, [id])).rowCount === 1, `marker ${id} applied`);
  };

  beforeAll(async () => {
    db = await createTestDatabases('streamed');
    sourceUrl = `${db.sourceUrl}?options=${encodeURIComponent('-c logical_decoding_work_mem=64kB')}`;
    await db.source.query(`CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL DEFAULT 0);
      CREATE TABLE log (id int PRIMARY KEY, note text NOT NULL); CREATE TABLE audit (id int PRIMARY KEY, note text NOT NULL);`);
    writer = new pg.Client({ connectionString: db.sourceUrl });
    await writer.connect();
    app = await start();
  });

  afterAll(async () => {
    await writer?.end().catch(() => {});
    await app?.stop();
    await db?.drop();
  });

  it('applies a large transaction while it runs, with its subtransactions rolled back exactly, and small ones committed meanwhile first', async () => {
    const before = await streamedCount();
    await writer.query('BEGIN');
    await writer.query(`INSERT INTO items (id, v) SELECT g, md5(g::text) FROM generate_series(1, 3000) g`);
    // Rolled back: an update of rows the transaction inserted, and (nested) more inserts.
    await writer.query(`SAVEPOINT a; UPDATE items SET n = 1 WHERE id <= 2000; SAVEPOINT a2; INSERT INTO items (id, v) SELECT g, 'gone' FROM generate_series(3001, 4000) g; ROLLBACK TO SAVEPOINT a`);
    // Kept: a released subtransaction with a child rolled back inside it.
    await writer.query(`SAVEPOINT b; INSERT INTO items (id, v) SELECT g, 'kept' FROM generate_series(4001, 5000) g;
      SAVEPOINT b2; DELETE FROM items WHERE id <= 1000; ROLLBACK TO SAVEPOINT b2; UPDATE items SET n = 2 WHERE id > 4500; RELEASE SAVEPOINT b`);
    await waitFor(async () => (await streamedCount()) > before && (await openSessions()) > 0, 'the transaction streamed and open on the target');

    // Committed while it runs: applied at once on the main session, not behind the large one.
    await marker(1);
    expect(await rowCount(db.target, 'items')).toBe(0);
    expect(app!.status.largeTransactions.inProgress).toBe(1);
    expect(app!.status.largeTransactions.changes).toBeGreaterThan(0);

    await writer.query(`UPDATE items SET v = 'top' WHERE id % 7 = 0; DELETE FROM items WHERE id BETWEEN 2001 AND 2500`);
    await writer.query('COMMIT');
    await waitForIdentical(db.source, db.target, TABLES);
    expect(await rowCount(db.target, 'items')).toBe(3500);
    expect((await db.target.query(`SELECT 1 FROM items WHERE v = 'gone' OR n = 1`)).rowCount).toBe(0);
    expect(await openSessions()).toBe(0);
    expect(app!.status.largeTransactions).toEqual({ inProgress: 0, changes: 0 });
    expect(lines.filter((l) => l.includes('"level":50') || l.includes('applied whole'))).toEqual([]);
  });

  it('the main session failing around a large transaction\'s commit (its group waiting for a lock, then terminated) loses nothing', async () => {
    const lockers = [new pg.Client({ connectionString: db.targetUrl }), new pg.Client({ connectionString: db.targetUrl })] as const;
    for (const l of lockers) await l.connect();
    /** pgferry's target session waiting for a lock on `table`. */
    const waiting = async (table: string): Promise<number | null> =>
      (await db.target.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pgferry' AND wait_event_type = 'Lock' AND query LIKE $2`, [db.name, `%"public"."${table}"%`])).rows[0]?.pid ?? null;
    try {
      const before = await streamedCount();
      await writer.query('BEGIN');
      await writer.query(`INSERT INTO items (id, v) SELECT g, 'ordered' FROM generate_series(50001, 53000) g`);
      await waitFor(async () => (await streamedCount()) > before && (await openSessions()) > 0, 'the transaction streamed and open on the target');
      // Hold apply on a first small transaction, so the next one and the large commit arrive together.
      await lockers[0].query('BEGIN; LOCK TABLE log IN ACCESS EXCLUSIVE MODE');
      await db.source.query(`INSERT INTO log VALUES (59, 'held')`);
      await waitFor(async () => (await waiting('log')) !== null, 'apply waiting for the log lock');
      await db.source.query(`INSERT INTO audit VALUES (60, 'committed before the large one')`);
      await writer.query('COMMIT');
      const end = (await db.source.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0]!.l;
      await waitFor(
        async () => (await db.source.query(`SELECT 1 FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = $1 AND r.flush_lsn IS NOT NULL AND r.sent_lsn >= $2::pg_lsn`, [db.slot, end])).rowCount === 1,
        'the large commit sent',
      );
      await lockers[1].query('BEGIN; LOCK TABLE audit IN ACCESS EXCLUSIVE MODE');
      await lockers[0].query('ROLLBACK');
      // The group holding the audit row now waits for its lock; then it fails. The large
      // transaction must not be committed ahead of it (a restart would skip the audit row): the
      // loop waits for the group's commit first (this sequence does not force the race, it checks
      // the failure path ends identical).
      await waitFor(async () => (await waiting('audit')) !== null, 'apply waiting for the audit lock');
      await db.target.query('SELECT pg_terminate_backend($1)', [await waiting('audit')]);
      await lockers[1].query('ROLLBACK');
      await waitForIdentical(db.source, db.target, [...TABLES, 'audit']);
    } finally {
      for (const l of lockers) await l.end();
    }
  });

  it('leaves no trace of a large transaction rolled back on the source', async () => {
    const before = await streamedCount();
    await writer.query('BEGIN');
    await writer.query(`INSERT INTO items (id, v) SELECT g, 'aborted' FROM generate_series(10001, 15000) g`);
    await writer.query(`UPDATE items SET n = 9 WHERE id <= 4000`);
    await waitFor(async () => (await streamedCount()) > before && (await openSessions()) > 0, 'the transaction streamed and open on the target');
    await writer.query('ROLLBACK');
    await waitFor(async () => (await openSessions()) === 0, 'its target session gone');
    await marker(2);
    await waitForIdentical(db.source, db.target, TABLES);
    expect((await db.target.query(`SELECT 1 FROM items WHERE v = 'aborted' OR n = 9`)).rowCount).toBe(0);
  });

  it('a large transaction running across a stop and restart is streamed again from its first change and applied once', async () => {
    const before = await streamedCount();
    await writer.query('BEGIN');
    await writer.query(`INSERT INTO items (id, v) SELECT g, 'across' FROM generate_series(20001, 25000) g`);
    await waitFor(async () => (await streamedCount()) > before && (await openSessions()) > 0, 'the transaction streamed and open on the target');
    await app!.stop();
    app = undefined;
    expect(await openSessions()).toBe(0);
    expect(await rowCount(db.target, 'items')).toBe(6500);
    app = await start();
    await writer.query(`INSERT INTO items (id, v) SELECT g, 'after restart' FROM generate_series(25001, 26000) g`);
    await writer.query('COMMIT');
    await waitForIdentical(db.source, db.target, TABLES);
    expect(await rowCount(db.target, 'items')).toBe(6500 + 6000);
  });

  it('a streamed transaction that fails on the target is applied again whole, after its commit, where a strict replay resolves it', async () => {
    // A trigger that fires during apply (ENABLE ALWAYS) and sees the per-table batching's order:
    // the streamed transaction's batched form trips it; whole, the strict replay does not.
    await db.source.query(`CREATE TABLE parents (id int PRIMARY KEY); CREATE TABLE children (id int PRIMARY KEY, parent int NOT NULL)`);
    await db.target.query(`CREATE TABLE parents (id int PRIMARY KEY); CREATE TABLE children (id int PRIMARY KEY, parent int NOT NULL); ${alwaysParentCheck('children', 'parent', 'parents')}`);
    await db.source.query(`ALTER PUBLICATION ${db.name}_pub ADD TABLE parents, children`);
    await db.source.query(`INSERT INTO parents VALUES (0)`);
    await waitFor(async () => (await db.target.query(`SELECT 1 FROM parents`)).rowCount === 1, 'parent 0 applied').catch((err: Error) => {
      throw new Error(`${err.message}\n${lines.join('\n')}`);
    });
    const before = await streamedCount();
    // Batched, the children run (opened first) is sent before parent 1 is inserted.
    await writer.query(`BEGIN; INSERT INTO children SELECT g, 0 FROM generate_series(0, 3000) g;
      INSERT INTO parents VALUES (1); INSERT INTO children VALUES (3001, 1); COMMIT`);
    await waitForIdentical(db.source, db.target, [...TABLES, 'parents', 'children']);
    // Slot statistics reach the view through the statistics system a little later than the data.
    await waitFor(async () => (await streamedCount()) > before, 'the transaction counted as streamed');
    expect(lines.some((l) => l.includes('applied whole'))).toBe(true);
    expect(lines.some((l) => l.includes('one change at a time'))).toBe(true);
    expect(app!.status.phase).toBe('streaming');
  });

  it(`more than ${MAX_STREAMED} large transactions at once: the one past the limit makes pgferry take them whole, and all apply once`, async () => {
    await app!.stop();
    app = await start(); // streaming again (a new process's state)
    const writers: pg.Client[] = [];
    try {
      for (let w = 0; w <= MAX_STREAMED; w++) {
        const c = new pg.Client({ connectionString: db.sourceUrl });
        await c.connect();
        writers.push(c);
        await c.query('BEGIN');
        await c.query(`INSERT INTO items (id, v) SELECT g, 'writer ${w}' FROM generate_series(${100_000 + w * 10_000}, ${100_000 + w * 10_000 + 2999}) g`);
      }
      // The server streams the largest of them each time its decoding memory is full: in the end every one.
      for (let w = 0; w <= MAX_STREAMED; w++) await writers[w]!.query(`INSERT INTO items (id, v) SELECT g, 'more' FROM generate_series(${100_000 + w * 10_000 + 3000}, ${100_000 + w * 10_000 + 5999}) g`);
      await waitFor(() => lines.some((l) => l.includes(`more than ${MAX_STREAMED} large transactions`)), 'the limit reached');
      for (const c of writers) await c.query('COMMIT');
      await waitForIdentical(db.source, db.target, TABLES);
      expect(await openSessions()).toBe(0);
      expect(app.status.phase).toBe('streaming');
    } finally {
      for (const c of writers) await c.end().catch(() => {});
    }
  });

  it('with streamLargeTransactions off, a large transaction is sent whole at its commit', async () => {
    await app!.stop();
    app = await start({ streamLargeTransactions: false });
    await writer.query(`BEGIN; INSERT INTO items (id, v) SELECT g, 'whole' FROM generate_series(80001, 83000) g`);
    // Streamed, its first block would come before this later commit, and open a session at once.
    await marker(4);
    expect(await openSessions()).toBe(0);
    await writer.query('COMMIT');
    await waitForIdentical(db.source, db.target, TABLES);
    await app.stop();
    app = await start(); // streaming again for what follows
  });

  it('applies captured DDL inside a large transaction in place; the next small transaction uses the new shape; a restart right after it changes nothing', async () => {
    await app!.stop();
    const logged = lines.length;
    app = await start({ captureDdl: true });
    // Open across everything below, so the slot's restart_lsn stays before the large transaction.
    const holder = new pg.Client({ connectionString: db.sourceUrl });
    await holder.connect();
    try {
      await holder.query(`BEGIN; INSERT INTO log VALUES (50, 'held open')`);
      const before = await streamedCount();
      await writer.query('BEGIN');
      await writer.query(`INSERT INTO items (id, v) SELECT g, 'before ddl' FROM generate_series(30001, 33000) g`);
      await writer.query(`ALTER TABLE items ADD COLUMN extra text NOT NULL DEFAULT 'x'`);
      await writer.query(`INSERT INTO items (id, v, extra) SELECT g, 'after ddl', 'y' FROM generate_series(33001, 36000) g`);
      await waitFor(async () => (await streamedCount()) > before && (await openSessions()) > 0, 'the transaction streamed and open on the target');
      await writer.query('COMMIT');
      await db.source.query(`INSERT INTO items (id, v, extra) VALUES (40000, 'small', 'z')`);
      await waitForIdentical(db.source, db.target, TABLES);
      expect((await db.target.query(`SELECT extra FROM items WHERE id = 40000`)).rows).toEqual([{ extra: 'z' }]);

      // Restarted, the server decodes it again from restart_lsn (PostgreSQL 14 may even stream it
      // again, then abort it: see the suspect transactions below).
      await app.stop();
      app = await start({ captureDdl: true });
      await holder.query('COMMIT');
      await marker(3);
      await waitForIdentical(db.source, db.target, TABLES);
    } finally {
      await holder.end().catch(() => {});
    }
    expect(lines.slice(logged).filter((l) => l.includes('"level":50') || l.includes('applied whole'))).toEqual([]);

    // Captured DDL in a subtransaction rolled back: a DDL message carries the top-level xid, so it
    // cannot be told apart; the transaction is applied whole, after its commit, instead.
    const streamedBefore = await streamedCount();
    await writer.query('BEGIN');
    await writer.query(`INSERT INTO items (id, v) SELECT g, 'around a rolled-back ddl' FROM generate_series(60001, 63000) g`);
    await writer.query(`SAVEPOINT s; ALTER TABLE items ADD COLUMN gone int`);
    await writer.query(`INSERT INTO items (id, v, gone) SELECT g, 'in the subtransaction', 1 FROM generate_series(70001, 73000) g`);
    // Applied on the streamed session: it holds the ALTER's lock.
    await waitFor(async () => (await db.target.query(`SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND c.relname = 'items' AND l.mode = 'AccessExclusiveLock' AND l.granted`)).rowCount! > 0, 'the DDL applied on the streamed session');
    await writer.query(`ROLLBACK TO SAVEPOINT s`);
    await writer.query(`INSERT INTO items (id, v) SELECT g, 'after it' FROM generate_series(63001, 64000) g`);
    await writer.query('COMMIT');
    await waitForIdentical(db.source, db.target, TABLES);
    await waitFor(async () => (await streamedCount()) > streamedBefore, 'the transaction counted as streamed');
    expect((await db.target.query(`SELECT 1 FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'gone'`)).rowCount).toBe(0);
    expect(lines.slice(logged).some((l) => l.includes('applied whole'))).toBe(true);
  });

  it('a streamed transaction that began before the start position and fails waits for its end: aborted or already applied, it changes nothing; committed, it fails', async () => {
    // After a restart PostgreSQL 14 may stream again a transaction that holds catalog changes and
    // committed before the start position, then abort it (it depends on WAL timing, so the
    // messages are given here directly).
    await db.target.query(`CREATE TABLE dups (id int PRIMARY KEY); INSERT INTO dups SELECT generate_series(1, 20000)`);
    const connect = async (): Promise<pg.Client> => {
      const c = new pg.Client({ connectionString: db.targetUrl, application_name: 'pgferry' });
      await c.connect();
      return c;
    };
    const mainClient = await connect();
    const log = captureLogger(lines, 'warn');
    try {
      const main = new Applier(mainClient, db.slot, log);
      await main.init();
      main.relation({ tag: 'relation', relationOid: 424242, namespace: 'public', name: 'dups', replicaIdentity: 'default', columns: [{ name: 'id', typeOid: 23, typeModifier: -1, isKey: true }] });
      const streamed = new StreamedTransactions(connect, main, db.slot, log, false);
      /** Every row the target holds already: enough COPY batches that the failure surfaces while they are sent. */
      const resend = async (xid: number, suspect: boolean): Promise<void> => {
        await streamed.start(xid, true, false, suspect);
        for (let id = 1; id <= 20000; id++) await streamed.change({ tag: 'insert', xid, relationOid: 424242, newTuple: [String(id)] });
        streamed.stop();
      };
      await resend(900, true);
      await streamed.abort(900, 900);
      await resend(901, true);
      expect(await streamed.commit(901, 1n, true)).toBeNull();
      await resend(902, true);
      await expect(streamed.commit(902, 1n, false)).rejects.toThrow(/duplicate key/);
      // Not suspect: the failure is the stream's at once.
      await expect(resend(903, false)).rejects.toThrow(/duplicate key/);
      await streamed.closeAll();
      expect(streamed.summary()).toEqual({ inProgress: 0, changes: 0 });
      expect(await openSessions()).toBe(0);
    } finally {
      await mainClient.end();
    }
  });

  describe('driven message by message', () => {
    const connect = async (): Promise<pg.Client> => {
      const c = new pg.Client({ connectionString: db.targetUrl, application_name: 'pgferry' });
      await c.connect();
      return c;
    };
    /** A main applier on its own session and the streamed transactions beside it, as streamOnce sets them up. */
    const harness = async (): Promise<{ main: Applier; streamed: StreamedTransactions; close: () => Promise<void> }> => {
      const mainClient = await connect();
      const log = captureLogger(lines, 'warn');
      const main = new Applier(mainClient, db.slot, log);
      const streamed = new StreamedTransactions(connect, main, db.slot, log, false);
      await main.init();
      return { main, streamed, close: async () => (await streamed.closeAll(), await mainClient.end()) };
    };
    const relation = (relationOid: number, name: string, replicaIdentity: 'default' | 'full', columns: [string, number, boolean][]) =>
      ({ tag: 'relation', relationOid, namespace: 'public', name, replicaIdentity, columns: columns.map(([n, typeOid, isKey]) => ({ name: n, typeOid, typeModifier: -1, isKey })) }) as const;

    it('a failure that surfaces while a large transaction sends its last changes at its commit closes its session', async () => {
      await db.target.query(`CREATE TABLE fail_u (id int PRIMARY KEY, v text); CREATE TABLE fail_a (id int PRIMARY KEY); CREATE TABLE fail_b (id int PRIMARY KEY); CREATE TABLE fail_c (id int PRIMARY KEY)`);
      const { main, streamed, close } = await harness();
      try {
        main.relation(relation(525201, 'fail_u', 'default', [['id', 23, true], ['v', 25, false]]));
        ['fail_a', 'fail_b', 'fail_c'].forEach((name, i) => main.relation(relation(525202 + i, name, 'default', [['id', 23, true]])));
        await streamed.start(910, true, false);
        // Its first run: an update of a row the target does not have (a divergence, found when answered)...
        await streamed.change({ tag: 'update', xid: 910, relationOid: 525201, oldKind: null, oldTuple: null, newTuple: ['999999', 'x'] });
        // ...then three COPY runs: sent at the commit, the last one waits for that first answer.
        for (let i = 0; i < 3; i++) for (let id = 1; id <= 200; id++) await streamed.change({ tag: 'insert', xid: 910, relationOid: 525202 + i, newTuple: [String(id)] });
        streamed.stop();
        await expect(streamed.commit(910, 1n, false)).rejects.toThrow(/diverged/);
        // Left open, its uncommitted rows would block the whole transaction's replay on the main session.
        await waitFor(async () => (await openSessions()) === 0, 'no pgferry session left in a transaction', 15_000);
        expect(streamed.summary()).toEqual({ inProgress: 0, changes: 0 });
      } finally {
        await close();
      }
    });

    it('a TRUNCATE refused because a table left out of it refers to one listed (after a resumed copy) deletes the rows instead', async () => {
      // The source truncated both; the referring table was copied again afterwards, so its part is dropped.
      await db.target.query(`CREATE TABLE tr_parent (id int PRIMARY KEY); CREATE TABLE tr_child (id int PRIMARY KEY, parent int); ALTER TABLE tr_child ADD FOREIGN KEY (parent) REFERENCES tr_parent NOT VALID;
        INSERT INTO tr_parent SELECT generate_series(1, 10); INSERT INTO tr_child VALUES (1, NULL)`);
      const { main, close } = await harness();
      try {
        main.relation(relation(525501, 'tr_parent', 'default', [['id', 23, true]]));
        await main.change({ tag: 'insert', relationOid: 525501, newTuple: ['11'] });
        await main.change({ tag: 'truncate', relationOids: [525501], cascade: false, restartIdentity: false });
        await main.change({ tag: 'insert', relationOid: 525501, newTuple: ['12'] });
        main.endTransaction(5n);
        await (await main.commitGroup())!.committed;
        expect((await db.target.query(`SELECT array_agg(id ORDER BY id) AS ids FROM tr_parent`)).rows[0].ids).toEqual([12]);
        expect((await db.target.query(`SELECT count(*)::int AS n FROM tr_child`)).rows[0].n).toBe(1);
        expect(lines.join('\n')).toMatch(/TRUNCATE refused on the target; deleting the rows instead/);
      } finally {
        await close();
      }
    });

    it('an update merged into a buffered row counts its new size: rows grown by updates are sent before they outgrow memory', async () => {
      await db.target.query(`CREATE TABLE grown (id int PRIMARY KEY, body text)`);
      const { main, close } = await harness();
      try {
        main.relation(relation(525401, 'grown', 'default', [['id', 23, true], ['body', 25, false]]));
        // 560 rows inserted empty, then each updated to 1 MB in the same group: merged, 560 MB in one
        // run unless the run is sent at its byte limit (a COPY body that long is past V8's string limit).
        const big = 'x'.repeat(1_000_000);
        for (let id = 1; id <= 560; id++) await main.change({ tag: 'insert', relationOid: 525401, newTuple: [String(id), ''] });
        for (let id = 1; id <= 560; id++) await main.change({ tag: 'update', relationOid: 525401, oldKind: null, oldTuple: null, newTuple: [String(id), big] });
        main.endTransaction(4n);
        await (await main.commitGroup())!.committed;
        expect((await db.target.query(`SELECT count(*)::int AS n, sum(length(body))::text AS len FROM grown`)).rows[0]).toEqual({ n: 560, len: '560000000' });
      } finally {
        await close();
      }
    });

    it('rows without a key: an identical row held by a large transaction is not waited for (the free one is taken); the only match held elsewhere is', async () => {
      await db.target.query(`CREATE TABLE twins (v text); INSERT INTO twins VALUES ('same'), ('same')`);
      const { main, streamed, close } = await harness();
      try {
        main.relation(relation(525301, 'twins', 'full', [['v', 25, true]]));
        main.relation(relation(525302, 'fail_a', 'default', [['id', 23, true]]));
        // The large transaction updates one of the twins; a subtransaction's savepoint sends that update.
        await streamed.start(920, true, false);
        await streamed.change({ tag: 'update', xid: 920, relationOid: 525301, oldKind: 'full', oldTuple: ['same'], newTuple: ['large'] });
        await streamed.change({ tag: 'insert', xid: 921, relationOid: 525302, newTuple: ['5000'] });
        streamed.stop();
        await waitFor(
          async () => (await db.target.query(`SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pgferry' AND state = 'idle in transaction' AND backend_xid IS NOT NULL`, [db.name])).rowCount === 1,
          'the large transaction holding a twin',
        );
        // A small transaction committed meanwhile updates "one" of them too: it must take the free one.
        await main.change({ tag: 'update', relationOid: 525301, oldKind: 'full', oldTuple: ['same'], newTuple: ['small'] });
        main.endTransaction(2n);
        const group = (await main.commitGroup())!;
        let committed = false;
        void group.committed.then(() => (committed = true), () => {});
        await waitFor(() => committed, 'the small transaction committed, not waiting for the large one', 15_000);
        const large = (await streamed.commit(920, 3n, false))!;
        await large.committed;
        expect((await db.target.query(`SELECT v FROM twins ORDER BY v`)).rows.map((r) => r.v)).toEqual(['large', 'small']);
        // The only match locked by a session outside pgferry: waited for, not reported as a divergence.
        const other = new pg.Client({ connectionString: db.targetUrl });
        await other.connect();
        try {
          await other.query(`BEGIN; SELECT * FROM twins WHERE v = 'small' FOR UPDATE`);
          await main.change({ tag: 'update', relationOid: 525301, oldKind: 'full', oldTuple: ['small'], newTuple: ['later'] });
          main.endTransaction(4n);
          const later = (await main.commitGroup())!;
          await waitFor(
            async () => (await db.target.query(`SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pgferry' AND wait_event_type = 'Lock'`, [db.name])).rowCount === 1,
            'the update waiting for the lock',
          );
          await other.query('COMMIT');
          await later.committed;
        } finally {
          await other.end();
        }
        expect((await db.target.query(`SELECT v FROM twins ORDER BY v`)).rows.map((r) => r.v)).toEqual(['large', 'later']);
      } finally {
        await close();
      }
    });
  });
});
