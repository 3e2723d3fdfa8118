import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { confirmedFlush, currentWal, exited, randomMoment, startChild, waitForIdentical } from '../support/pgferry.js';
import { seededRandom } from '../support/random.js';


describe('--capture-ddl with kill -9 at any moment, then restart', () => {
  let db: TestDatabases;

  beforeAll(async () => {
    db = await createTestDatabases('ddlcrash');
    await db.source.query(`CREATE TABLE k (id int PRIMARY KEY, v text); INSERT INTO k SELECT g, 'seed' FROM generate_series(1, 1000) g`);
  });

  afterAll(async () => {
    await db?.drop();
  });

  // After a kill -9 the slot's confirmed position may lag what the target committed (DDL and progress in one
  // transaction): rebuilt here deterministically by restoring a copy of the slot taken before two DDLs.
  it('does not apply a DDL again when the slot is behind what the target holds', async () => {
    const slot = `${db.slot}_resend`;
    const args = ['--source', db.sourceUrl, '--target', db.targetUrl, '--slot', slot, '--publication', 'ddlresend_pub', '--capture-ddl'];
    await db.source.query(`CREATE TABLE resend (id int PRIMARY KEY, v text); INSERT INTO resend VALUES (1, 'a')`);
    const first = startChild([...args, '--tables', 'resend']);
    try {
      // Streaming: the copy's post-data DDL (the primary key) is done before the target logs DDL.
      await waitFor(async () => (await db.target.query(`SELECT 1 FROM pgferry.migration WHERE phase = 'streaming'`).catch(() => ({ rowCount: 0 }))).rowCount === 1, 'streaming');
      await db.target.query(`CREATE TABLE public.resend_log (query text);
        CREATE FUNCTION public.log_resend() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO public.resend_log VALUES (current_query()); END $$;
        CREATE EVENT TRIGGER log_resend ON ddl_command_end WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION public.log_resend();
        ALTER EVENT TRIGGER log_resend ENABLE ALWAYS;`);
      // A copy of the slot at the current position: it will resend everything after it.
      await waitFor(async () => ((await confirmedFlush(db.source, slot)) ?? 0n) >= (await currentWal(db.source)), 'confirmed up to now');
      await db.source.query(`SELECT pg_copy_logical_replication_slot($1, $2)`, [slot, `${slot}_old`]);
      await db.source.query(`BEGIN; INSERT INTO resend VALUES (2, 'b'); ALTER TABLE resend ADD COLUMN w int DEFAULT 3; INSERT INTO resend VALUES (3, 'c', 4); COMMIT`);
      await db.source.query(`ALTER TABLE resend RENAME COLUMN w TO w2`);
      await waitForIdentical(db.source, db.target, ['resend']);
    } finally {
      first.kill('SIGKILL');
      await exited(first);
    }
    // The slot goes back to before both DDLs; the target already holds them (and says so in pgferry.migration).
    await waitFor(async () => (await db.source.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active`, [slot])).rowCount === 0, 'slot released');
    await db.source.query(`SELECT pg_drop_replication_slot($1)`, [slot]);
    await db.source.query(`SELECT pg_copy_logical_replication_slot($1, $2)`, [`${slot}_old`, slot]);
    await db.source.query(`SELECT pg_drop_replication_slot($1)`, [`${slot}_old`]);
    const again = startChild([...args, '--tables', 'resend']);
    try {
      await db.source.query(`INSERT INTO resend VALUES (4, 'd', 5)`);
      const wal = await currentWal(db.source);
      await waitFor(async () => ((await confirmedFlush(db.source, slot)) ?? 0n) >= wal, 'caught up after the resend');
      await waitForIdentical(db.source, db.target, ['resend']);
      const { rows } = await db.target.query(`SELECT query FROM public.resend_log WHERE query NOT LIKE '%CREATE SCHEMA IF NOT EXISTS pgferry;%'`); // pgferry's own state schema upgrade is DDL too
      expect(rows.map((r) => r.query)).toEqual(['ALTER TABLE resend ADD COLUMN w int DEFAULT 3', 'ALTER TABLE resend RENAME COLUMN w TO w2']);
      // Neither re-executed (an error, or a warning that the target already matched) nor skipped.
      expect(again.output()).not.toMatch(/"level":"(error|warn)"/);
    } finally {
      again.kill('SIGTERM');
      expect(await exited(again), again.output()).toBe(0);
    }
  });

  it('applies every captured DDL exactly once', async () => {
    const seed = Number(process.env['PGFERRY_TEST_SEED'] ?? 20261125);
    const random = seededRandom(seed).next; // kill moments replay with PGFERRY_TEST_SEED
    const args = ['--source', db.sourceUrl, '--target', db.targetUrl, '--slot', db.slot, '--publication', 'ddlcrash_pub', '--capture-ddl', '--tables', 'k'];
    const slotActive = async () => (await db.source.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active`, [db.slot])).rowCount === 1;
    let issued = 0;
    let id = 10_000;
    const outputs: string[] = [];
    for (let round = 0; round < 5; round++) {
      const child = startChild(args);
      // Streaming (not still copying: the slot is active during the copy too).
      await waitFor(async () => (await db.target.query(`SELECT phase FROM pgferry.migration WHERE slot = $1`, [db.slot]).catch(() => ({ rows: [] }))).rows[0]?.phase === 'streaming', 'initial copy done');
      await waitFor(slotActive, 'streaming');
      if (round === 0) {
        // Counts every DDL the target executes, also under session_replication_role = replica.
        await db.target.query(`CREATE SCHEMA audit; CREATE TABLE audit.ddl_log (tag text, query text);
          CREATE FUNCTION audit.log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit.ddl_log VALUES (tg_tag, current_query()); END $$;
          CREATE EVENT TRIGGER log_ddl ON ddl_command_end EXECUTE FUNCTION audit.log_ddl();
          ALTER EVENT TRIGGER log_ddl ENABLE ALWAYS;`);
      }
      // DDL and rows keep coming while the process is killed at a random moment.
      const workload = (async () => {
        for (let i = 0; i < 3; i++) {
          const col = `c${round}_${i}`;
          await db.source.query(`INSERT INTO k (id, v) SELECT g, 'before ${col}' FROM generate_series(${id}, ${id + 199}) g`);
          id += 200;
          await db.source.query(`BEGIN; UPDATE k SET v = v || '!' WHERE id % 10 = ${i}; ALTER TABLE k ADD COLUMN ${col} int DEFAULT ${round}; UPDATE k SET ${col} = id WHERE id % 7 = 0; COMMIT`);
          issued++;
          await db.source.query(`ALTER TABLE k RENAME COLUMN ${col} TO r${col}`);
          issued++;
        }
      })();
      await randomMoment(random, 50, 1_500);
      child.kill('SIGKILL');
      expect(await exited(child), child.output()).toBe('SIGKILL');
      outputs.push(child.output());
      await workload;
    }
    const final = startChild(args);
    try {
      await waitFor(slotActive, 'streaming again');
      const wal = await currentWal(db.source);
      await waitFor(async () => ((await confirmedFlush(db.source, db.slot)) ?? 0n) >= wal, 'caught up with the source');
      await waitForIdentical(db.source, db.target, ['k']);
      const columns = (c: typeof db.source) =>
        c.query(`SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = 'k'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attname`).then((r) => r.rows);
      expect(await columns(db.target)).toEqual(await columns(db.source));
      const { rows: log } = await db.target.query(`SELECT tag, query FROM audit.ddl_log WHERE query NOT LIKE '%CREATE SCHEMA IF NOT EXISTS pgferry;%'`); // pgferry's own state schema upgrade is DDL too
      const altered = log.filter((l) => l.tag === 'ALTER TABLE').map((l) => l.query);
      expect(altered).toHaveLength(issued);
      expect(new Set(altered).size).toBe(issued); // each statement once
      expect([...outputs, final.output()].join('\n')).not.toContain('altered by hand');
    } finally {
      final.kill('SIGTERM');
      expect(await exited(final), `seed ${seed}\n${final.output()}`).toBe(0);
    }
  });
});
