import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { FENCE_DDL } from '../../src/cutover/fence-record.js';
import type { CutoverState } from '../../src/cutover/state.js';
import { createTestDatabases, serverUrl, waitFor, type TestDatabases } from '../support/databases.js';
import { startPgBouncer, type TestPgBouncer } from '../support/pgbouncer.js';
import { captureLogger, exited, startChild, startInProcess, waitForIdentical } from '../support/pgferry.js';

const TOKEN = 'cutover-crash-token';

async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  return c;
}

async function admin(side: 'source' | 'target', sql: string): Promise<void> {
  const c = await connect(serverUrl(side, 'postgres'));
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Whether PgBouncer holds database entry `name` paused (admin console `SHOW DATABASES`). */
async function paused(b: TestPgBouncer, name: string): Promise<boolean> {
  const c = await connect(b.adminUrl);
  try {
    const { rows } = await c.query<{ name: string; paused: string | number }>('SHOW DATABASES');
    return Number(rows.find((r) => r.name === name)?.paused) === 1;
  } finally {
    await c.end();
  }
}

/** `default_transaction_read_only` as set on the source for database `name`: key '' is the database, else the role. */
async function readOnlySettings(name: string): Promise<Record<string, string>> {
  const c = await connect(serverUrl('source', 'postgres'));
  try {
    const { rows } = await c.query<{ role: string | null; value: string }>(
      `SELECT r.rolname AS role, substr(cfg, length('default_transaction_read_only=') + 1) AS value
         FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) AS cfg
        WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = $1) AND cfg LIKE 'default\\_transaction\\_read\\_only=%'`,
      [name],
    );
    return Object.fromEntries(rows.map((r) => [r.role ?? '', r.value]));
  } finally {
    await c.end();
  }
}

describe('a pgferry killed between fence and switch', () => {
  let db: TestDatabases | undefined;
  let role = '';
  let bouncer: TestPgBouncer | undefined;
  const children: ReturnType<typeof startChild>[] = [];

  afterEach(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await Promise.all(children.map((c) => exited(c)));
    await bouncer?.stop();
    await db?.drop();
    if (role) for (const side of ['source', 'target'] as const) await admin(side, `DROP ROLE IF EXISTS ${role}`);
    [db, bouncer, role] = [undefined, undefined, ''];
    children.length = 0;
  });

  it('is undone by the next start: the saved settings come back exactly and streaming resumes', async () => {
    db = await createTestDatabases('cutcrash');
    const d = db;
    d.source.on('error', () => {}); // a superuser session in the database: the fence terminates it
    role = `${d.name}_app`;
    for (const side of ['source', 'target'] as const) await admin(side, `CREATE ROLE ${role} LOGIN`);
    await d.source.query(`CREATE TABLE orders (id bigserial PRIMARY KEY, token text NOT NULL); INSERT INTO orders (token) SELECT 'seed-' || g FROM generate_series(1, 200) g`);
    await d.source.query(`GRANT SELECT, INSERT ON orders TO ${role}; GRANT USAGE ON SEQUENCE orders_id_seq TO ${role}`);
    // A setting that was there before the fence: the restore must put it back, not reset it.
    await admin('source', `ALTER ROLE ${role} IN DATABASE ${d.name} SET default_transaction_read_only = off`);
    expect(await readOnlySettings(d.name)).toEqual({ [role]: 'off' });

    const dir = mkdtempSync(join(tmpdir(), 'pgferry-cutcrash-'));
    const config = join(dir, 'pgferry.json');
    bouncer = await startPgBouncer({ appdb: `host=127.0.0.1 port=${new URL(d.sourceUrl).port} dbname=${d.name}` }, [role]);
    const b = bouncer;
    writeFileSync(config, JSON.stringify({ apiToken: TOKEN, cutoverMaxLagSeconds: '3600', cutoverMaxLagBytes: '1GB', cutoverDrainTimeout: '600', pgbouncerAdmin: b.adminUrl, pgbouncerConfig: b.configFile, pgbouncerDatabase: 'appdb' }));
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const args = ['--source', d.sourceUrl, '--target', d.targetUrl, '--slot', d.slot, '--publication', `${d.name}_pub`, '--config', config, '--http-port', String(port)];
    const status = async (): Promise<{ phase: string; cutover: CutoverState | null; schemaFinishing: { state: string } | null }> => (await (await fetch(`${base}/status`)).json()) as { phase: string; cutover: CutoverState | null; schemaFinishing: { state: string } | null };

    const first = startChild(args);
    children.push(first);
    // Streaming, and schema copy's last step (ANALYZE) done: it would wait behind the lock below too.
    await waitFor(async () => (await status()).schemaFinishing?.state === 'done', 'the first pgferry to stream');

    // Apply stalls behind a lock on the target, so the drain cannot pass the fence position.
    const lock = await connect(d.targetUrl);
    await lock.query('BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE');
    const writer = await connect(b.url(role, 'appdb'));
    await writer.query(`INSERT INTO orders (token) VALUES ('before-fence')`);
    await writer.end();

    const res = await fetch(`${base}/cutover`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status, await res.clone().text()).toBe(202);
    await waitFor(async () => (await status()).cutover?.steps.some((s) => s.name === 'drain' && s.outcome === 'running') === true, 'the cutover to fence and start draining');
    // Fenced, and the fence recorded on the target with what it replaced.
    const fenced = await readOnlySettings(d.name);
    expect(fenced['']).toBe('on');
    expect(fenced[role]).toBe('on');
    const { rows: [record] } = await d.target.query<{ stage: string; previous: Record<string, string>; roles: string[] }>(`SELECT stage, previous, roles FROM pgferry.cutover_fence WHERE slot = $1`, [d.slot]);
    expect(record).toMatchObject({ stage: 'fenced', previous: { [role]: 'off' } });
    expect(record!.roles).toContain(role);
    expect(await paused(b, 'appdb')).toBe(true);

    first.kill('SIGKILL');
    expect(await exited(first), first.output()).toBe('SIGKILL');
    // Nothing undid the fence: the source is still read-only for the application.
    const blocked = await connect(d.sourceUrl.replace('postgres@', `${role}@`));
    await expect(blocked.query(`INSERT INTO orders (token) VALUES ('while-fenced')`)).rejects.toThrow(/read-only/);
    await blocked.end();
    await lock.query('COMMIT');
    await lock.end();

    const second = startChild(args);
    children.push(second);
    await waitFor(async () => (await status()).phase === 'streaming', 'the second pgferry to stream');
    // Exactly the settings from before the fence: database reset, the role's own 'off' back.
    expect(await readOnlySettings(d.name)).toEqual({ [role]: 'off' });
    expect((await d.target.query(`SELECT 1 FROM pgferry.cutover_fence WHERE slot = $1`, [d.slot])).rowCount).toBe(0);
    expect(second.output()).toMatch(/cutover was interrupted between fence and switch; source default_transaction_read_only restored/);
    expect(second.output()).toContain(`role ${role}: = off`);
    expect(await paused(b, 'appdb')).toBe(false);
    expect(second.output()).toMatch(/PgBouncer appdb resumed after the interrupted cutover/);

    // The application writes again and streaming carries it to the target.
    const app = await connect(b.url(role, 'appdb'));
    await app.query(`INSERT INTO orders (token) SELECT 'after-restart-' || g FROM generate_series(1, 50) g`);
    await app.end();
    const source = await connect(d.sourceUrl);
    try {
      const prints = await waitForIdentical(source, d.target, ['orders']);
      expect(prints['orders']).toMatch(/^251 rows/);
    } finally {
      await source.end();
    }
    second.kill('SIGTERM');
    expect(await exited(second), second.output()).toBe(0);
  });

  it('undoes a recorded fence even when the start then fails its preflight: a wrong flag does not keep the source read-only', async () => {
    db = await createTestDatabases('cutpf');
    const d = db;
    await d.source.query(`CREATE TABLE orders (id bigserial PRIMARY KEY, token text NOT NULL)`);
    // What a pgferry killed after the fence leaves: the database read-only, and the record saying it was not set before.
    await admin('source', `ALTER DATABASE ${d.name} SET default_transaction_read_only = on`);
    await d.target.query(FENCE_DDL);
    await d.target.query(`INSERT INTO pgferry.cutover_fence (slot, database, roles, previous, stage) VALUES ($1, $2, '{}', '{}', 'fenced')`, [d.slot, d.name]);
    const app = await startInProcess({ source: d.sourceUrl, target: d.targetUrl, slot: d.slot, publication: `${d.name}_pub`, tables: 'no_such_table' });
    await expect(app.done).rejects.toThrow(/no_such_table.* not found/);
    await app.stop();
    expect(await readOnlySettings(d.name)).toEqual({});
    expect((await d.target.query(`SELECT 1 FROM pgferry.cutover_fence WHERE slot = $1`, [d.slot])).rowCount).toBe(0);
  });

  it('leaves a fence recorded during the switch alone and says so: the applications may already use the target', async () => {
    db = await createTestDatabases('cutsw');
    const d = db;
    await d.source.query(`CREATE TABLE orders (id bigserial PRIMARY KEY, token text NOT NULL)`);
    // What a pgferry killed during the switch leaves: a record in stage 'switching'. Undoing it would SET the database to 'off'.
    await d.target.query(FENCE_DDL);
    await d.target.query(`INSERT INTO pgferry.cutover_fence (slot, database, roles, previous, stage) VALUES ($1, $2, '{}', '{"": "off"}', 'switching')`, [d.slot, d.name]);
    const lines: string[] = [];
    const app = await startInProcess({ source: d.sourceUrl, target: d.targetUrl, slot: d.slot, publication: `${d.name}_pub` }, { log: captureLogger(lines, 'warn') });
    try {
      await waitFor(() => app.status.phase === 'streaming', 'streaming');
      expect(await readOnlySettings(d.name)).toEqual({});
      expect((await d.target.query(`SELECT stage FROM pgferry.cutover_fence WHERE slot = $1`, [d.slot])).rows).toEqual([{ stage: 'switching' }]);
      expect(lines.join('\n')).toMatch(/stopped during the switch; the source is left read-only .* DELETE FROM pgferry.cutover_fence/);
    } finally {
      await app.stop();
    }
  });
});
