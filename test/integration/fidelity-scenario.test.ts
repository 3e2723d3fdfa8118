import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForNoDifferences } from '../support/converge.js';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { exited, pace, startChild } from '../support/pgferry.js';
import { mb, processMemory } from '../support/process-memory.js';
import { seededRandom } from '../support/random.js';
import { availableExtensions, typeColumns, typeSetup, type TypeColumn } from '../support/type-catalog.js';

/**
 * Issue #7's closing scenario, as a user would run it: a database holding every type, source and
 * target databases set to different time zones and date styles, migrated with --capture-ddl under
 * a random workload that includes a 1,000,000-row transaction and a column added mid-stream. Ends
 * identical, with pgferry's whole process under 300 MB.
 */
const MEMORY_LIMIT = 300 * 1024 * 1024;
const BIG_ROWS = 1_000_000;
const SEED = Number(process.env['PGFERRY_TEST_SEED'] ?? 20261125);

describe('every type, different session defaults, a huge transaction and a column added mid-stream', () => {
  let db: TestDatabases;
  let cols: TypeColumn[];
  let child: ReturnType<typeof startChild> | undefined;

  beforeAll(async () => {
    db = await createTestDatabases('scenario');
    const ext = await availableExtensions([db.source, db.target]);
    cols = typeColumns(ext);
    await db.source.query(`${typeSetup(ext)}
      CREATE TABLE public.everything (id integer PRIMARY KEY, ${cols.map((c) => `${c.name} ${c.type}`).join(', ')});
      CREATE TABLE public.bulk (id integer PRIMARY KEY, payload text NOT NULL);`);
    for (const [client, settings] of [
      [db.source, { TimeZone: 'Pacific/Chatham', DateStyle: 'SQL, DMY', extra_float_digits: '0' }],
      [db.target, { TimeZone: 'America/St_Johns', DateStyle: 'Postgres, MDY', extra_float_digits: '1' }],
    ] as const) {
      for (const [k, v] of Object.entries(settings)) await client.query(`ALTER DATABASE ${db.name} SET ${k} = '${v}'`);
    }
  });

  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGKILL');
      await exited(child);
    }
    await db?.drop();
  });

  it('ends identical, with pgferry under 300 MB', async () => {
    const random = seededRandom(SEED);
    const value = (c: TypeColumn): string => (random.chance(0.1) ? 'NULL' : `${random.pick(c.values)}::${c.type}`);
    const row = (id: number): string => `(${id}, ${cols.map(value).join(', ')})`;
    // A source session with its database's own TimeZone and DateStyle writes the values.
    const writer = new pg.Client({ connectionString: db.sourceUrl });
    await writer.connect();
    await writer.query(`INSERT INTO everything VALUES ${Array.from({ length: 200 }, (_, i) => row(i + 1)).join(', ')}`);

    child = startChild(['--source', db.sourceUrl, '--target', db.targetUrl, '--slot', db.slot, '--publication', `${db.name}_pub`, '--capture-ddl']);
    let peak = 0;
    const watch = (): boolean => {
      if (child!.exitCode !== null || child!.signalCode !== null) throw new Error(`pgferry exited (${child!.exitCode ?? child!.signalCode}):\n${child!.output()}`);
      peak = Math.max(peak, processMemory(child!.pid!).peakRss);
      return true;
    };
    const phase = async (): Promise<string | null> =>
      (await db.target.query<{ phase: string }>(`SELECT phase FROM pgferry.migration WHERE slot = $1`, [db.slot]).catch(() => ({ rows: [] as { phase: string }[] }))).rows[0]?.phase ?? null;
    await waitFor(async () => watch() && (await phase()) === 'streaming', 'phase streaming', 120_000);

    // Random transactions: inserts, updates (key changes included), deletes; the column arrives midway.
    let nextId = 201;
    let added = false;
    for (let t = 0; t < 120; t++) {
      if (t === 60) {
        await writer.query(`ALTER TABLE everything ADD COLUMN added_mid_stream text DEFAULT 'default'`);
        added = true;
      }
      await writer.query('BEGIN');
      for (let n = random.int(1, 8); n > 0; n--) {
        const op = random.pick(['insert', 'update', 'update', 'key', 'delete'] as const);
        const id = random.int(1, nextId - 1);
        if (op === 'insert') await writer.query(`INSERT INTO everything (id, ${cols.map((c) => c.name).join(', ')}) VALUES ${row(nextId++)}`);
        else if (op === 'update') {
          const c = random.pick(cols);
          await writer.query(`UPDATE everything SET ${c.name} = ${value(c)}${added ? `, added_mid_stream = 'set ${t}'` : ''} WHERE id = ${id}`);
        } else if (op === 'key') await writer.query(`UPDATE everything SET id = ${nextId++} WHERE id = ${id}`);
        else await writer.query(`DELETE FROM everything WHERE id = ${id}`);
      }
      await writer.query('COMMIT');
      if (t === 90) await writer.query(`INSERT INTO bulk SELECT g, md5(g::text) FROM generate_series(1, ${BIG_ROWS}) g`); // one transaction
      watch();
      await pace(5);
    }
    await writer.end();

    await waitFor(async () => watch() && (await db.target.query(`SELECT 1 FROM bulk WHERE id = ${BIG_ROWS}`).catch(() => ({ rowCount: 0 }))).rowCount === 1, `${BIG_ROWS} rows on the target`, 150_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${child!.output()}`);
    });
    await waitForNoDifferences(db.source, db.target, ['public.everything', 'public.bulk'], { keys: { 'public.everything': ['id'], 'public.bulk': ['id'] }, timeoutMs: 120_000, context: () => child!.output() });
    watch();
    expect(peak, `pgferry peak RSS ${mb(peak)}`).toBeGreaterThan(0);
    expect(peak, `pgferry peak RSS ${mb(peak)}`).toBeLessThan(MEMORY_LIMIT);
    const { rows } = await db.target.query(`SELECT column_default FROM information_schema.columns WHERE table_name = 'everything' AND column_name = 'added_mid_stream'`);
    expect(rows).toHaveLength(1);
    console.info(`every type, ${BIG_ROWS} rows in one transaction, a column added mid-stream: identical; pgferry peak RSS ${mb(peak)}`);
    child.kill('SIGTERM');
    expect(await exited(child), child.output()).toBe(0);
  }, 400_000);
});
