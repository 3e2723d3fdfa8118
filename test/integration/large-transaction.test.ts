import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { exited, startChild } from '../support/pgferry.js';
import { mb, processMemory } from '../support/process-memory.js';

/** pgferry's whole process (heap, buffers, native memory) must stay under this, whatever the transaction size. */
const MEMORY_LIMIT = 300 * 1024 * 1024;
const ROWS = 1_000_000;
/** One transaction of TOASTed text: rows of 1 MB each (stored compressed out of line, decoded to 1 MB each). */
const TOAST_ROWS = 250;
const TOAST_ROW_BYTES = 1024 * 1024;

async function count(client: pg.Client, table: string): Promise<number> {
  return (await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n;
}

/** A content hash that does not depend on session settings (ints and text only). */
async function contentHash(client: pg.Client, sql: string): Promise<string> {
  return (await client.query<{ h: string }>(sql)).rows[0]!.h;
}

describe('one huge source transaction, applied with bounded memory', () => {
  let db: TestDatabases;
  let child: ReturnType<typeof startChild> | undefined;
  let peak = 0;
  const samples: string[] = [];

  const sample = (): void => {
    if (!child?.pid || child.exitCode !== null) return;
    const m = processMemory(child.pid);
    peak = Math.max(peak, m.peakRss);
  };

  beforeAll(async () => {
    db = await createTestDatabases('bigtx');
    // Source only: schema copy creates the tables on the target.
    await db.source.query(`CREATE TABLE public.bulk (id integer PRIMARY KEY, payload text NOT NULL);
      CREATE TABLE public.docs (id integer PRIMARY KEY, body text NOT NULL);
      CREATE TABLE public.marks (id integer PRIMARY KEY);`);
  });

  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGKILL');
      await exited(child);
    }
    await db?.drop();
  });

  it(`applies a ${ROWS.toLocaleString('en')}-row transaction and a ${TOAST_ROWS} MB TOASTed-text transaction under ${mb(MEMORY_LIMIT)} RSS; an aborted one leaves no trace`, async () => {
    child = startChild(['--source', db.sourceUrl, '--target', db.targetUrl, '--slot', db.slot, '--publication', `${db.name}_pub`]);
    const alive = (): boolean => {
      if (child!.exitCode !== null || child!.signalCode !== null) throw new Error(`pgferry exited (${child!.exitCode ?? child!.signalCode}):\n${child!.output()}`);
      return true;
    };
    const phase = async (): Promise<string | null> =>
      (await db.target.query<{ phase: string }>(`SELECT phase FROM pgferry.migration WHERE slot = $1`, [db.slot]).catch(() => ({ rows: [] as { phase: string }[] }))).rows[0]?.phase ?? null;
    await waitFor(async () => alive() && (await phase()) === 'streaming', 'phase streaming', 60_000);

    // A big transaction that rolls back: decoded and discarded on the source, nothing on the target.
    await db.source.query('BEGIN');
    await db.source.query(`INSERT INTO public.bulk SELECT g, 'aborted' FROM generate_series(1, 200000) g`);
    await db.source.query('ROLLBACK');
    await db.source.query(`INSERT INTO public.marks VALUES (1)`);
    await waitFor(async () => alive() && (await count(db.target, 'public.marks')) === 1, 'mark after the aborted transaction', 60_000);
    expect(await count(db.target, 'public.bulk')).toBe(0);

    const started = Date.now();
    await db.source.query(`INSERT INTO public.bulk SELECT g, md5(g::text) FROM generate_series(1, ${ROWS}) g`);
    await waitFor(
      async () => {
        alive();
        sample();
        // One target transaction: the last row is visible exactly when all are (a cheap index probe while it applies).
        return (await db.target.query(`SELECT 1 FROM public.bulk WHERE id = ${ROWS}`)).rowCount === 1;
      },
      `${ROWS} rows on the target`,
      120_000,
    );
    samples.push(`${ROWS} rows applied ${Date.now() - started} ms after commit, peak RSS ${mb(peak)}`);
    expect(await count(db.target, 'public.bulk')).toBe(ROWS);
    const bulkHash = `SELECT md5(string_agg(id::text || ':' || payload, ',' ORDER BY id)) AS h FROM public.bulk`;
    expect(await contentHash(db.target, bulkHash)).toBe(await contentHash(db.source, bulkHash));

    const toastStarted = Date.now();
    // Each value compresses to a few kB of TOAST on the source, but pgoutput sends it decompressed: 1 MB each.
    await db.source.query(`INSERT INTO public.docs SELECT g, repeat(md5(g::text), ${TOAST_ROW_BYTES / 32}) FROM generate_series(1, ${TOAST_ROWS}) g`);
    await waitFor(
      async () => {
        alive();
        sample();
        return (await db.target.query(`SELECT 1 FROM public.docs WHERE id = ${TOAST_ROWS}`)).rowCount === 1;
      },
      `${TOAST_ROWS} TOASTed rows on the target`,
      120_000,
    );
    samples.push(`${TOAST_ROWS} x ${mb(TOAST_ROW_BYTES)} applied ${Date.now() - toastStarted} ms after commit, peak RSS ${mb(peak)}`);
    expect(await count(db.target, 'public.docs')).toBe(TOAST_ROWS);
    const docsHash = `SELECT md5(string_agg(id::text || ':' || length(body) || ':' || md5(body), ',' ORDER BY id)) AS h FROM public.docs`;
    expect(await contentHash(db.target, docsHash)).toBe(await contentHash(db.source, docsHash));
    expect(await count(db.target, 'public.bulk')).toBe(ROWS); // the aborted rows never appeared

    sample();
    expect(peak, `pgferry peak RSS (VmHWM) ${mb(peak)} over ${mb(MEMORY_LIMIT)}\n${samples.join('\n')}`).toBeGreaterThan(0);
    expect(peak, `pgferry peak RSS (VmHWM) ${mb(peak)} over ${mb(MEMORY_LIMIT)}\n${samples.join('\n')}`).toBeLessThan(MEMORY_LIMIT);
    console.info(samples.join('\n'));

    child.kill('SIGTERM');
    expect(await exited(child), child.output()).toBe(0);
  }, 170_000);
});
