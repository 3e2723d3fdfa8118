import pg from 'pg';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { clientConfig, connectClient } from '../../src/pg/connection.js';
import { createTestDatabases, serverUrl, waitFor, type TestDatabases } from '../support/databases.js';
import { startInProcess } from '../support/pgferry.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

function cli(args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { PATH: process.env['PATH'] ?? '', PGFERRY_LOG_LEVEL: 'silent' }, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stderr: r.stderr };
}

/** The sessions holding pgferry's lock for `$1` (a slot) in the current database. */
const HOLDERS = `SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid = 1885824626::oid
                   AND l.objid::int8 = (hashtext($1)::int8 & 4294967295) AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`;

describe('one pgferry per migration', () => {
  let db: TestDatabases;

  beforeAll(async () => {
    db = await createTestDatabases('single');
    await db.source.query(`CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 100) g`);
  });

  afterAll(async () => {
    await db?.drop();
  });

  it("has the server probe every pgferry session's connection, so a crashed host's lock goes within about a minute", async () => {
    for (const url of [db.sourceUrl, db.targetUrl]) {
      const c = await connectClient(clientConfig('source', `${url}?sslmode=disable`), 'source');
      try {
        const { rows } = await c.query<{ name: string; setting: string }>(`SELECT name, setting FROM pg_settings WHERE name LIKE 'tcp_keepalives_%' ORDER BY name`);
        expect(rows).toEqual([
          { name: 'tcp_keepalives_count', setting: '3' },
          { name: 'tcp_keepalives_idle', setting: '30' },
          { name: 'tcp_keepalives_interval', setting: '10' },
        ]);
      } finally {
        await c.end();
      }
    }
  });

  it('refuses a second start while the first runs, in one line naming the first, and the first goes on', async () => {
    const settings = { source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub` };
    const first = await startInProcess(settings);
    let second: App | null = null;
    try {
      await waitFor(() => first.status.phase === 'streaming', 'the first to stream');
      second = await startInProcess(settings);
      const refused = await second.done.then(
        () => null,
        (err: unknown) => err as Error,
      );
      expect(refused?.message).toMatch(new RegExp(`^target: another pgferry is running migration ${db.slot} on this database \\(its session: pid \\d+`));
      expect(refused?.message).not.toContain('\n');
      const cleanup = cli(['cleanup', '--source', db.sourceUrl, '--target', db.targetUrl, '--slot', db.slot, '--publication', `${db.name}_pub`]);
      expect(cleanup.status).toBe(1);
      expect(cleanup.stderr.trim()).toBe(`pgferry: target: a pgferry is running migration ${db.slot} on this database; stop it first, then run cleanup`);
      await db.source.query(`INSERT INTO t VALUES (101, 'after the refusal')`);
      await waitFor(async () => (await db.target.query(`SELECT 1 FROM t WHERE id = 101`)).rowCount === 1, 'the first to apply a new row');
      expect(first.status.phase).toBe('streaming');
    } finally {
      await second?.stop();
      await first.stop();
    }
    // Stopped, the first no longer holds the migration: a new start resumes it.
    const again = await startInProcess(settings);
    try {
      await waitFor(() => again.status.phase === 'streaming', 'a new start to resume');
    } finally {
      await again.stop();
    }
  });

  it('takes the lock again when its session is ended, so a later start is still refused', async () => {
    const settings = { source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub` };
    const first = await startInProcess(settings);
    let second: App | null = null;
    try {
      await waitFor(() => first.status.phase === 'streaming', 'the first to stream');
      const { rows: [held] } = await db.target.query<{ pid: number }>(HOLDERS, [db.slot]);
      await db.target.query(`SELECT pg_terminate_backend($1)`, [held!.pid]);
      await waitFor(async () => (await db.target.query<{ pid: number }>(HOLDERS, [db.slot])).rows.some((r) => r.pid !== held!.pid), 'the first to take the lock again');
      second = await startInProcess(settings);
      const refused = await second.done.then(() => null, (err: unknown) => err as Error);
      expect(refused?.message).toContain(`another pgferry is running migration ${db.slot}`);
      await db.source.query(`INSERT INTO t VALUES (102, 'still the first')`);
      await waitFor(async () => (await db.target.query(`SELECT 1 FROM t WHERE id = 102`)).rowCount === 1, 'the first to apply a new row');
      expect(first.status.phase).toBe('streaming');
    } finally {
      await second?.stop();
      await first.stop();
    }
  });

  it('stops when another session takes the lock while its own session is gone', async () => {
    const settings = { source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: `${db.name}_pub` };
    const first = await startInProcess(settings);
    const other = new pg.Client({ connectionString: db.targetUrl });
    await other.connect();
    try {
      await waitFor(() => first.status.phase === 'streaming', 'the first to stream');
      const { rows: [held] } = await db.target.query<{ pid: number }>(HOLDERS, [db.slot]);
      // One round trip: the lock is granted to this session as soon as the first's lock session has ended.
      await other.query(`SELECT pg_terminate_backend($1); SELECT pg_advisory_lock(1885824626, hashtext($2))`.replace('$2', `'${db.slot}'`).replace('$1', String(held!.pid)));
      const stopped = await first.done.then(() => null, (err: unknown) => err as Error);
      expect(stopped?.message).toMatch(new RegExp(`^target: another pgferry is running migration ${db.slot} on this database \\(its session: pid ${(other as unknown as { processID: number }).processID}`));
    } finally {
      await other.end();
      await first.stop();
    }
  });

  it('cleanup leaves a slot of another database alone, and says whose it is', async () => {
    await db.source.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [`${db.slot}_theirs`]);
    const r = cli(['cleanup', '--source', serverUrl('source', 'postgres'), '--target', db.targetUrl, '--slot', `${db.slot}_theirs`]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(`pgferry: source: replication slot ${db.slot}_theirs belongs to database ${db.name}, not postgres; run cleanup with the --source URL of ${db.name} (or check --slot), nothing was dropped`);
    expect((await db.source.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [`${db.slot}_theirs`])).rowCount).toBe(1);
  });

  it('refuses the source database as the target, before creating anything', async () => {
    const r = cli(['start', '--http-port', '0', '--source', db.sourceUrl, '--target', db.sourceUrl.replace('127.0.0.1', 'localhost'), '--slot', `${db.slot}_same`]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(`pgferry: target: it is the source database itself (${db.name} on the same server); point --target at the database on the new server`);
    expect((await db.source.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'pgferry'`)).rowCount).toBe(0);
    expect((await db.source.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [`${db.slot}_same`])).rowCount).toBe(0);
  });
});
