import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { cleanup } from '../../src/cleanup.js';
import { loadSettings } from '../../src/config/settings.js';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { captureLogger, confirmedFlush, currentWal, pace, startInProcess, waitForIdentical } from '../support/pgferry.js';
import { seededRandom } from '../support/random.js';

/** Columns (name, type) and index definitions of every user table, as one comparable text per side. */
async function shape(c: pg.Client): Promise<string> {
  const { rows: cols } = await c.query(
    `SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname IN ('public', 'app') AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, 2`,
  );
  const { rows: idx } = await c.query(`SELECT indexdef FROM pg_indexes WHERE schemaname IN ('public', 'app') ORDER BY indexname`);
  return JSON.stringify({ cols, idx: idx.map((r) => r.indexdef) }, null, 1);
}

async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

describe('--capture-ddl: schema changes on the source are applied on the target in order with the rows', () => {
  let db: TestDatabases;
  let app: App | undefined;
  const lines: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabases('ddl');
    await db.source.query(`CREATE SCHEMA app;
      CREATE TABLE acct (id int PRIMARY KEY, v text, n int);
      CREATE TABLE app.t2 (id int PRIMARY KEY, v text);
      CREATE TYPE mood AS ENUM ('sad', 'ok');
      CREATE TABLE feel (id int PRIMARY KEY, m mood);
      INSERT INTO acct SELECT g, 'v' || g, g FROM generate_series(1, 500) g;
      INSERT INTO app.t2 SELECT g, 'x' FROM generate_series(1, 50) g;`);
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: 'ddl_pub', captureDdl: true }, { log: captureLogger(lines, 'info') });
    await waitFor(() => app!.status.phase === 'streaming' && app!.status.confirmedLsn !== null, 'streaming');
  });

  afterAll(async () => {
    await app?.stop();
    await db?.source.query(`DROP OWNED BY ${db.name}_app; DROP ROLE IF EXISTS ${db.name}_app`).catch(() => {});
    await db?.drop();
  });

  it('applies ADD/RENAME/DROP COLUMN, ALTER TYPE, CREATE/DROP INDEX and CREATE TABLE under a concurrent workload', async () => {
    let stop = false;
    let nextId = 10_000;
    const errors: unknown[] = [];
    const seed = Number(process.env['PGFERRY_TEST_SEED'] ?? 20261125);
    // Writers touch only `id` and `v`, which every DDL below leaves alone, in random order and transaction sizes,
    // and only their own rows (id >= 10,000, each writer its own), which the bulk UPDATEs below leave alone: no deadlocks.
    const writers = [0, 1].map(async (w) => {
      const random = seededRandom(seed + w);
      const mine: number[] = []; // each writer updates and deletes only rows it inserted: writers never wait on each other
      const c = await connect(db.sourceUrl);
      try {
        for (let i = 0; !stop && i < 5_000; i++) {
          const multi = random.chance(0.3);
          if (multi) await c.query('BEGIN');
          for (let n = multi ? random.int(2, 20) : 1; n > 0; n--) {
            const op = random.pick(['insert', 'insert', 'update', 'delete'] as const);
            if (op === 'insert' || mine.length === 0) {
              mine.push(nextId);
              await c.query(`INSERT INTO acct (id, v) VALUES ($1, $2)`, [nextId++, `w${w}-${i}`]);
            } else if (op === 'update') await c.query(`UPDATE acct SET v = v || '+' WHERE id = $1`, [random.pick(mine)]);
            else await c.query(`DELETE FROM acct WHERE id = $1`, [mine.splice(random.int(0, mine.length - 1), 1)[0]]);
          }
          if (multi) await c.query('COMMIT');
          await pace(2);
        }
      } catch (err) {
        errors.push(err);
      } finally {
        await c.end();
      }
    });
    const ddl = await connect(db.sourceUrl);
    try {
      const steps = [
        `ALTER TABLE acct ADD COLUMN extra int DEFAULT 7`,
        `UPDATE acct SET extra = id WHERE id % 10 = 0 AND id <= 500`,
        `ALTER TABLE acct RENAME COLUMN n TO n2`,
        `UPDATE acct SET n2 = n2 + 1 WHERE id % 3 = 0 AND id <= 500`,
        `ALTER TABLE acct ALTER COLUMN n2 TYPE bigint`,
        `UPDATE acct SET n2 = 5000000000 WHERE id % 7 = 0 AND id <= 500`,
        `CREATE INDEX acct_v ON acct (v)`,
        `CREATE UNIQUE INDEX acct_n2 ON acct (n2, id)`,
        `DROP INDEX acct_v`,
        `CREATE INDEX CONCURRENTLY acct_conc ON acct (v, id)`,
        `ALTER TABLE acct DROP COLUMN extra`,
        // Rows before and after the DDL in one transaction, sent as one query string.
        `BEGIN; INSERT INTO acct (id, v, n2) VALUES (-1, 'before', 1); ALTER TABLE acct ADD COLUMN late text; INSERT INTO acct (id, v, late) VALUES (-2, 'after', 'late'); COMMIT`,
        // A new table, filled in the creating transaction and afterwards.
        `BEGIN; CREATE TABLE fresh (id int PRIMARY KEY, w text); INSERT INTO fresh SELECT g, 'in creating tx' FROM generate_series(1, 100) g; COMMIT`,
        `INSERT INTO fresh SELECT g, 'later' FROM generate_series(101, 200) g`,
        `UPDATE fresh SET w = 'updated' WHERE id % 2 = 0`,
        // Names resolve with the source session's search_path.
        `SET search_path = app, public`,
        `ALTER TABLE t2 ADD COLUMN z numeric(10, 3)`,
        `UPDATE t2 SET z = 1.5 WHERE id < 10`,
        `RESET search_path`,
      ];
      for (const sql of steps) {
        await ddl.query(sql);
        await pace(100);
      }
    } finally {
      stop = true;
      await Promise.all(writers);
      await ddl.end();
    }
    expect(errors).toEqual([]);
    await waitForIdentical(db.source, db.target, ['acct', 'fresh', 'app.t2']);
    expect(await shape(db.target)).toBe(await shape(db.source));
    expect((await db.target.query(`SELECT count(*)::int AS n FROM fresh WHERE w = 'in creating tx'`)).rows[0].n).toBe(50);
    expect(app!.status.lastError).toBeNull();
    // Each statement ran on the target as such, none was found already applied.
    const applied = lines.filter((l) => l.includes('applied DDL captured on the source')).map((l) => JSON.parse(l).statement as string);
    expect(applied).toEqual([
      'ALTER TABLE acct ADD COLUMN extra int DEFAULT 7',
      'ALTER TABLE acct RENAME COLUMN n TO n2',
      'ALTER TABLE acct ALTER COLUMN n2 TYPE bigint',
      'CREATE INDEX IF NOT EXISTS acct_v ON public.acct USING btree (v)',
      'CREATE UNIQUE INDEX IF NOT EXISTS acct_n2 ON public.acct USING btree (n2, id)',
      'DROP INDEX IF EXISTS public.acct_v',
      'CREATE INDEX IF NOT EXISTS acct_conc ON public.acct USING btree (v, id)',
      'ALTER TABLE acct DROP COLUMN extra',
      'ALTER TABLE acct ADD COLUMN late text', // the one DDL statement of the BEGIN; INSERT; ALTER; INSERT; COMMIT string
      'CREATE TABLE fresh (id int PRIMARY KEY, w text)',
      'ALTER TABLE t2 ADD COLUMN z numeric(10, 3)', // resolved through the source session's search_path (app)
    ]);
    expect(lines.filter((l) => l.includes('"level":"warn"') || l.includes('"level":"error"'))).toEqual([]);
  });

  it('captures DDL run by an ordinary (non-superuser) table owner, a table rename included', async () => {
    const role = `${db.name}_app`;
    await db.source.query(`CREATE ROLE ${role} LOGIN; GRANT CREATE ON SCHEMA public TO ${role}`);
    const c = await connect(db.sourceUrl.replace('postgres@', `${role}@`));
    try {
      await c.query(`CREATE TABLE owned (id int PRIMARY KEY, v text)`);
      await c.query(`INSERT INTO owned VALUES (1, 'a')`);
      await c.query(`ALTER TABLE owned ADD COLUMN w int DEFAULT 2`);
      await c.query(`INSERT INTO owned VALUES (2, 'b', 3)`);
      await c.query(`UPDATE owned SET v = 'c' WHERE id = 1`);
      await c.query(`ALTER TABLE owned RENAME TO owned2`);
      await c.query(`INSERT INTO owned2 VALUES (4, 'd', 5)`);
    } finally {
      await c.end();
    }
    await waitForIdentical(db.source, db.target, ['owned2']);
    expect(app!.status.lastError).toBeNull();
  });

  it('stops on DDL it does not apply, naming the statement, and goes on once the target matches', async () => {
    await db.source.query(`CREATE TABLE doomed (id int PRIMARY KEY); INSERT INTO doomed VALUES (1)`);
    await waitForIdentical(db.source, db.target, ['doomed']);
    await db.source.query(`DROP TABLE doomed`);
    // Past the DROP's commit (other test files write to the same server meanwhile, so caught up the
    // slot may confirm their WAL, up to a position inside the DROP's transaction, never its end).
    const dropEnd = await currentWal(db.source);
    await db.source.query(`INSERT INTO acct (id, v) VALUES (-3, 'after the drop')`);
    const wal = await currentWal(db.source);
    await waitFor(() => app!.status.phase === 'failed', 'phase failed');
    expect(app!.status.lastError).toContain('DROP TABLE doomed');
    expect(app!.status.lastError).toContain('public.doomed');
    expect(await confirmedFlush(db.source, db.slot)).toBeLessThan(dropEnd);
    expect(lines.some((l) => l.includes('"level":"error"') && l.includes('DROP TABLE doomed'))).toBe(true);
    await db.target.query(`DROP TABLE doomed`);
    await waitForIdentical(db.source, db.target, ['acct']);
    await waitFor(async () => ((await confirmedFlush(db.source, db.slot)) ?? 0n) >= wal, 'confirmed past the drop');
    expect(app!.status.lastError).toBeNull();
  });

  it('stops on ALTER TYPE of an enum and on a new table without a key, and goes on once the target matches', async () => {
    await db.source.query(`ALTER TYPE mood ADD VALUE 'happy'`);
    await db.source.query(`INSERT INTO feel VALUES (1, 'happy')`);
    await waitFor(() => app!.status.phase === 'failed', 'phase failed');
    expect(app!.status.lastError).toContain(`"ALTER TYPE mood ADD VALUE 'happy'"`);
    expect(app!.status.lastError).toContain('enum public.mood has labels ["sad","ok"] on the target, ["sad","ok","happy"] on the source');
    await db.target.query(`ALTER TYPE mood ADD VALUE 'happy'`);
    await waitForIdentical(db.source, db.target, ['feel']);

    await db.source.query(`CREATE TABLE keyless (v text)`);
    await waitFor(() => app!.status.phase === 'failed', 'phase failed');
    expect(app!.status.lastError).toContain('public.keyless: created without a primary key, so its changes cannot be published');
    expect((await db.source.query(`SELECT 1 FROM pg_publication_tables WHERE pubname = 'ddl_pub' AND tablename = 'keyless'`)).rowCount).toBe(0);
    await db.source.query(`UPDATE keyless SET v = 'still writable on the source'`);
    await db.target.query(`CREATE TABLE keyless (v text)`);
    await waitFor(() => app!.status.phase === 'streaming' && app!.status.lastError === null, 'streaming again');
  });

  it('is removed by pgferry cleanup, event triggers and function', async () => {
    await app!.stop();
    app = undefined;
    const before = await db.source.query(`SELECT evtname FROM pg_event_trigger ORDER BY 1`);
    expect(before.rows.map((r) => r.evtname)).toEqual([`pgferry_ddl_${db.slot}`, `pgferry_drop_${db.slot}`]);
    const done = await cleanup(loadSettings({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: 'ddl_pub' }, {}));
    expect(done.join('\n')).toContain('DDL capture');
    expect((await db.source.query(`SELECT 1 FROM pg_event_trigger`)).rowCount).toBe(0);
    expect((await db.source.query(`SELECT 1 FROM pg_proc WHERE proname LIKE 'capture_ddl%'`)).rowCount).toBe(0);
    expect((await db.source.query(`SELECT to_regnamespace('pgferry') AS n`)).rows[0].n).toBeNull();
    // DDL on the source works as before.
    await db.source.query(`CREATE TABLE after_cleanup (id int)`);
  });
});
