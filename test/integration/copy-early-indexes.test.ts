import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { startInProcess, waitForIdentical } from '../support/pgferry.js';
import { slowTable } from '../support/schema-fixture.js';

/**
 * A table's indexes and keys are built as soon as its own copy is done, while other tables are
 * still copying. The copy of `slow` is held up by a lock on the target; `fast` must get its
 * primary key and index meanwhile.
 */
describe('indexes built while other tables copy', () => {
  let db: TestDatabases;
  let app: App | undefined;
  let blocker: pg.Client | undefined;

  beforeAll(async () => {
    db = await createTestDatabases('early');
    await db.source.query(`
      CREATE TABLE public.fast (id int PRIMARY KEY, v text NOT NULL);
      CREATE INDEX fast_v ON public.fast (v);
      CREATE TABLE public.slow (id int PRIMARY KEY, v text NOT NULL);
      INSERT INTO public.fast SELECT g, 'v' || g FROM generate_series(1, 2000) g;
      INSERT INTO public.slow SELECT g, 'v' || g FROM generate_series(1, 2000) g;`);
    // The same table as on the source, without its key: schema copy keeps it and adds the key after the copy.
    await db.target.query(`CREATE TABLE public.slow (id int NOT NULL, v text NOT NULL)`);
  });

  afterAll(async () => {
    await blocker?.end().catch(() => {});
    await app?.stop();
    await db?.drop();
  });

  it('builds the first table\'s key and index before the other table is copied, then ends identical', async () => {
    blocker = new pg.Client({ connectionString: db.targetUrl });
    await blocker.connect();
    await blocker.query('BEGIN; LOCK TABLE public.slow IN SHARE MODE'); // COPY into it waits (ROW EXCLUSIVE)
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub` });
    const indexes = async (table: string): Promise<string[]> =>
      (await db.target.query<{ name: string }>(`SELECT indexname AS name FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1 ORDER BY 1`, [table])).rows.map((r) => r.name);
    await waitFor(async () => (await indexes('fast')).length === 2, 'fast indexed');
    expect(await indexes('fast')).toEqual(['fast_pkey', 'fast_v']);
    // Still copying: slow's rows are held up by the lock, so its key cannot exist yet.
    expect(app.status.phase).toBe('snapshot');
    expect(app.status.tables.get('public.slow')?.state).not.toBe('copied');
    await blocker.query('COMMIT');
    await waitFor(() => app!.status.phase === 'streaming', 'streaming');
    expect(await indexes('slow')).toEqual(['slow_pkey']);
    await db.source.query(`UPDATE public.slow SET v = 'changed' WHERE id <= 10; DELETE FROM public.fast WHERE id <= 10`);
    await waitForIdentical(db.source, db.target, ['fast', 'slow']);
  });
});

/**
 * An expression index and a check constraint that call a user function: the function is created
 * in post-data, so a table's early build must not run before it exists.
 */
describe('early builds and user functions', () => {
  let db: TestDatabases;
  let app: App | undefined;

  beforeAll(async () => {
    db = await createTestDatabases('earlyfn');
    await db.source.query(`
      CREATE FUNCTION public.norm(t text) RETURNS text IMMUTABLE LANGUAGE sql AS $$ SELECT lower(t) $$;
      CREATE TABLE public.uses_fn (id int PRIMARY KEY, v text NOT NULL, CONSTRAINT not_x CHECK (public.norm(v) <> 'x'));
      CREATE INDEX uses_fn_norm ON public.uses_fn (public.norm(v));
      INSERT INTO public.uses_fn SELECT g, 'V' || g FROM generate_series(1, 1000) g;`);
  });

  afterAll(async () => {
    await app?.stop();
    await db?.drop();
  });

  it('copies the table, then builds its index and check constraint once the function exists', async () => {
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub` });
    await waitFor(() => app!.status.phase === 'streaming' || app!.status.phase === 'failed', 'the copy to end');
    if (app.status.phase === 'failed') await app.done; // rejects with the reason
    expect(app.status.phase).toBe('streaming');
    const { rows } = await db.target.query<{ name: string }>(`SELECT indexname AS name FROM pg_indexes WHERE tablename = 'uses_fn' ORDER BY 1`);
    expect(rows.map((r) => r.name)).toEqual(['uses_fn_norm', 'uses_fn_pkey']);
    await db.source.query(`UPDATE public.uses_fn SET v = 'W' WHERE id <= 3`);
    await waitForIdentical(db.source, db.target, ['uses_fn']);
  });
});

/**
 * When the copy ends while the early builder waits for a lock on one table, its build is
 * cancelled and left to post-data, which builds the other tables' indexes meanwhile. `held`
 * copies first (it is tiny) but its key cannot be built: the test holds SHARE UPDATE EXCLUSIVE on
 * it (COPY's ROW EXCLUSIVE passes, an index build's SHARE waits). `free` must get its key and
 * index meanwhile (without the cancel, the builder would wait for `held` for ever).
 */
describe('an early build waiting for a lock is left to post-data', () => {
  let db: TestDatabases;
  let app: App | undefined;
  let blocker: pg.Client | undefined;

  beforeAll(async () => {
    db = await createTestDatabases('handover');
    await db.source.query(`
      CREATE TABLE public.held (id int PRIMARY KEY, v text NOT NULL);
      CREATE TABLE public.free (id int PRIMARY KEY, v text NOT NULL);
      CREATE INDEX free_v ON public.free (v);
      INSERT INTO public.held SELECT g, 'v' || g FROM generate_series(1, 10) g;
      INSERT INTO public.free SELECT g, repeat('v', 200) || g FROM generate_series(1, 50000) g;`);
    await db.target.query(`CREATE TABLE public.held (id int NOT NULL, v text NOT NULL)`);
  });

  afterAll(async () => {
    await blocker?.end().catch(() => {});
    await app?.stop();
    await db?.drop();
  });

  it('builds the other table\'s key and index while one table\'s build is blocked, then ends identical', async () => {
    blocker = new pg.Client({ connectionString: db.targetUrl });
    await blocker.connect();
    await blocker.query('BEGIN; LOCK TABLE public.held IN SHARE UPDATE EXCLUSIVE MODE');
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub`, copyWorkers: '2' });
    const indexes = async (table: string): Promise<string[]> =>
      (await db.target.query<{ name: string }>(`SELECT indexname AS name FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1 ORDER BY 1`, [table])).rows.map((r) => r.name);
    await waitFor(async () => (await indexes('free')).length === 2, 'free indexed');
    expect(await indexes('free')).toEqual(['free_pkey', 'free_v']);
    expect(app.status.tables.get('public.free')?.state).toBe('copied');
    // held's key is still waiting for the lock: the copy phase has not ended.
    expect(await indexes('held')).toEqual([]);
    expect(app.status.phase).toBe('snapshot');
    await blocker.query('COMMIT');
    await waitFor(() => app!.status.phase === 'streaming', 'streaming');
    expect(await indexes('held')).toEqual(['held_pkey']);
    await db.source.query(`UPDATE public.held SET v = 'changed' WHERE id <= 5; DELETE FROM public.free WHERE id <= 10`);
    await waitForIdentical(db.source, db.target, ['held', 'free']);
  });
});

/**
 * When the copy ends while the early builder is still building, post-data starts beside that
 * build instead of waiting for it. `slow` has an expression index whose function takes 10 ms a
 * row (5 s in all: a stand-in for a big build); `late` copies last, held up by a lock until that
 * build has begun. `late`'s key must be built while `slow`'s index is still being built.
 */
describe('post-data starts beside the early builder\'s last build', () => {
  let db: TestDatabases;
  let app: App | undefined;
  let blocker: pg.Client | undefined;

  beforeAll(async () => {
    db = await createTestDatabases('beside');
    await db.source.query(`${slowTable(500)}
      CREATE TABLE public.late (id int PRIMARY KEY, v text NOT NULL);
      INSERT INTO public.late SELECT g, 'v' || g FROM generate_series(1, 100) g;`);
    await db.target.query(`CREATE TABLE public.late (id int NOT NULL, v text NOT NULL)`);
  });

  afterAll(async () => {
    await blocker?.end().catch(() => {});
    await app?.stop();
    await db?.drop();
  });

  it('builds the last table\'s key while the builder is still on another table\'s index', async () => {
    blocker = new pg.Client({ connectionString: db.targetUrl });
    await blocker.connect();
    await blocker.query('BEGIN; LOCK TABLE public.late IN SHARE MODE'); // COPY into it waits (ROW EXCLUSIVE)
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub` });
    const building = async (): Promise<boolean> =>
      ((await db.target.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND query LIKE 'CREATE INDEX slow_expr %'`)).rowCount ?? 0) > 0;
    await waitFor(building, 'the early build of slow_expr');
    await blocker.query('COMMIT');
    const indexes = async (table: string): Promise<string[]> =>
      (await db.target.query<{ name: string }>(`SELECT indexname AS name FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1 ORDER BY 1`, [table])).rows.map((r) => r.name);
    await waitFor(async () => (await indexes('late')).length === 1, 'late indexed');
    expect(await indexes('slow')).toEqual(['slow_pkey']); // slow_expr still being built, by the builder
    expect(await building()).toBe(true);
    await waitFor(() => app!.status.phase === 'streaming', 'streaming');
    expect(await indexes('slow')).toEqual(['slow_expr', 'slow_pkey']);
    await db.source.query(`UPDATE public.late SET v = 'changed' WHERE id <= 5; UPDATE public.slow SET d = 1 WHERE id <= 5`);
    await waitForIdentical(db.source, db.target, ['slow', 'late']);
  });
});
