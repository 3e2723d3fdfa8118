import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { captureLogger, startInProcess, waitForIdentical } from '../support/pgferry.js';

describe('a source with a foreign table and views that read it', () => {
  let db: TestDatabases;
  let app: App | undefined;

  beforeAll(async () => {
    db = await createTestDatabases('fdw');
    const port = new URL(db.sourceUrl).port;
    await db.source.query(`CREATE EXTENSION postgres_fdw;
      CREATE SERVER here FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', port '${port}', dbname '${db.name}');
      CREATE USER MAPPING FOR CURRENT_USER SERVER here OPTIONS (user 'postgres');
      CREATE TABLE local_t (id int PRIMARY KEY, v text);
      INSERT INTO local_t SELECT g, 'v' || g FROM generate_series(1, 50) g;
      CREATE FOREIGN TABLE remote_t (id int, v text) SERVER here OPTIONS (table_name 'local_t');
      CREATE VIEW over_remote AS SELECT id, v FROM remote_t;
      CREATE VIEW over_view AS SELECT id FROM over_remote;
      CREATE VIEW plain AS SELECT id FROM local_t;
      -- A rule that writes to the foreign table does not make a view over its table read it.
      CREATE TABLE audit (id int PRIMARY KEY);
      CREATE RULE copy_out AS ON INSERT TO audit DO ALSO INSERT INTO remote_t VALUES (NEW.id + 1000, 'audit');
      CREATE VIEW over_audit AS SELECT id FROM audit`);
  });

  afterAll(async () => {
    await app?.stop();
    await db?.drop();
  });

  it('migrates the rest, names the foreign table and the views left out, and never stops on them', async () => {
    const lines: string[] = [];
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot }, { log: captureLogger(lines, 'warn') });
    await waitFor(() => app!.status.phase === 'streaming' && app!.status.schemaFinishing?.state === 'done', 'streaming, schema finished');
    await db.source.query(`INSERT INTO local_t VALUES (51, 'live')`);
    await waitForIdentical(db.source, db.target, ['local_t']);
    const { rows } = await db.target.query<{ relname: string }>(`SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('v', 'f') ORDER BY relname`);
    expect(rows.map((r) => r.relname)).toEqual(['over_audit', 'plain']);
    const notes = lines.map((l) => JSON.parse(l) as { note?: string }).flatMap((l) => (l.note ? [l.note] : []));
    expect(notes).toContain('foreign table "public"."remote_t" is not copied: its rows live on another server, and pgferry migrates neither it nor its server and user mappings; create them on the target by hand');
    expect(notes).toContain('view "public"."over_remote" is not copied: it reads a foreign table; create it on the target by hand once the foreign table is there');
    expect(notes).toContain('view "public"."over_view" is not copied: it reads a foreign table; create it on the target by hand once the foreign table is there');
  });

  it('refuses a partitioned table with a foreign partition at start, naming both and the remedy', async () => {
    // No key on the parent: a foreign partition cannot have one.
    await db.source.query(`CREATE TABLE m (id int) PARTITION BY RANGE (id);
      CREATE TABLE m_new PARTITION OF m (PRIMARY KEY (id)) FOR VALUES FROM (100) TO (200);
      CREATE TABLE m_old_there (id int PRIMARY KEY);
      CREATE FOREIGN TABLE m_old PARTITION OF m FOR VALUES FROM (0) TO (100) SERVER here OPTIONS (table_name 'm_old_there')`);
    const other = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: `${db.slot}_m`, publication: `${db.name}_m`, tables: 'm' });
    await expect(other.done).rejects.toThrow(
      /^source: partition public\.m_old of table public\.m is a foreign table: its rows live on another server and its changes are not in this server's WAL; leave public\.m out with --tables and migrate it separately$/,
    );
    await other.stop();
  });
});
