import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { loadSettings } from '../../src/config/settings.js';
import { ConfigError, describeError } from '../../src/errors.js';
import { createTestDatabases, serverUrl, waitFor, type TestDatabases } from '../support/databases.js';
import { scrape, valueOf } from '../support/metrics.js';
import { captureLogger, startInProcess, waitForIdentical } from '../support/pgferry.js';

/** The test servers trust every local connection, so any password is accepted: this one must never be shown. */
const PASSWORD = 'Sup3r-s3cret-pw';

/** The metric names the issue fixes: dashboards and alerts depend on them. */
const REQUIRED = [
  'pgferry_phase', 'pgferry_lag_bytes', 'pgferry_lag_seconds', 'pgferry_applied_lsn', 'pgferry_source_lsn', 'pgferry_slot_retained_wal_bytes',
  'pgferry_changes_applied_total', 'pgferry_transactions_applied_total', 'pgferry_apply_batch_duration_seconds', 'pgferry_snapshot_rows_copied_total',
  'pgferry_snapshot_bytes_copied_total', 'pgferry_snapshot_tables', 'pgferry_errors_total', 'pgferry_reconnects_total',
  'pgferry_cutover_step_duration_seconds', 'pgferry_write_blocked_seconds', 'process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds',
];

function withPassword(url: string): string {
  return url.replace('postgresql://postgres@', `postgresql://postgres:${PASSWORD}@`);
}

describe('metrics, probes, lag and logs of a running migration', () => {
  let db: TestDatabases;
  let app: App | undefined;
  const lines: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabases('ops');
    const ddl = `CREATE TABLE items (id int PRIMARY KEY, v text)`;
    await db.source.query(ddl);
    await db.target.query(ddl);
    await db.source.query(`INSERT INTO items SELECT g, 'v' FROM generate_series(1, 1000) g`);
    app = await startInProcess({ source: withPassword(db.sourceUrl), target: withPassword(db.targetUrl), slot: db.slot, publication: 'ops_pub', slotRetentionWarning: '1kB' }, { log: captureLogger(lines) });
    await waitFor(() => app!.status.phase === 'streaming' && app!.status.sourceLsn !== null, 'streaming');
  });

  afterAll(async () => {
    await app?.stop();
    await db?.drop();
  });

  it('exports every metric the issue names, with the copy and the phase', async () => {
    await waitFor(async () => (await scrape(app!)).names.has('nodejs_eventloop_lag_p99_seconds'), 'default metrics');
    const { names, samples } = await scrape(app!);
    for (const name of REQUIRED) expect(names, name).toContain(name);
    expect(valueOf(samples, 'pgferry_phase', { phase: 'streaming' })).toBe(1);
    expect(valueOf(samples, 'pgferry_phase', { phase: 'failed' })).toBe(0);
    expect(valueOf(samples, 'pgferry_snapshot_rows_copied_total', { table: 'public.items' })).toBe(1000);
    expect(valueOf(samples, 'pgferry_snapshot_tables', { state: 'copied' })).toBe(1);
    expect(valueOf(samples, 'pgferry_snapshot_bytes_copied_total')).toBeGreaterThan(0);
    expect(valueOf(samples, 'pgferry_snapshot_rows_estimated', { table: 'public.items' })).toBe(1000);
  });

  it('answers /healthz and /readyz', async () => {
    expect((await app!.http.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    await waitFor(async () => (await app!.http.inject({ method: 'GET', url: '/readyz' })).statusCode === 200, 'ready');
  });

  it('counts applied changes by table and operation, and the slot retention with its warning', async () => {
    await db.source.query(`UPDATE items SET v = 'u' WHERE id <= 10`);
    await db.source.query(`DELETE FROM items WHERE id = 1000`);
    await waitForIdentical(db.source, db.target, ['items']);
    await waitFor(async () => valueOf((await scrape(app!)).samples, 'pgferry_changes_applied_total', { table: 'public.items', op: 'delete' }) === 1, 'delete counted');
    const { samples } = await scrape(app!);
    expect(valueOf(samples, 'pgferry_changes_applied_total', { table: 'public.items', op: 'update' })).toBe(10);
    expect(valueOf(samples, 'pgferry_transactions_applied_total')).toBeGreaterThanOrEqual(2);
    // Both source transactions may share one target commit (a group): at least one batch.
    expect(valueOf(samples, 'pgferry_apply_batch_duration_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(valueOf(samples, 'pgferry_slot_retained_wal_bytes')).toBeGreaterThanOrEqual(0);
    expect(valueOf(samples, 'pgferry_slot_retention_warning_bytes')).toBe(1024);
    // A slot always retains more than 1kB (at least the current WAL record): the warning fired.
    await waitFor(() => lines.some((l) => l.includes('more source WAL than slotRetentionWarning')), 'retention warning logged');
  });

  it('reports lag in seconds on the source clock while apply is stuck, then 0 once caught up', async () => {
    await waitFor(async () => valueOf((await scrape(app!)).samples, 'pgferry_lag_seconds') === 0, 'no lag at rest');
    await db.target.query(`ALTER TABLE items RENAME TO items_away`);
    const { rows: [tx] } = await db.source.query<{ started: number }>(
      `WITH u AS (UPDATE items SET v = 'stuck' WHERE id = 500 RETURNING 1) SELECT extract(epoch FROM now())::float8 * 1000 AS started FROM u`,
    );
    await waitFor(() => app!.status.phase === 'failed', 'apply failed');
    expect((await app!.http.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(503);
    await waitFor(async () => (valueOf((await scrape(app!)).samples, 'pgferry_lag_seconds') ?? 0) > 1, 'lag above 1 s');
    // The commit happened just after `started` on the source's clock, so lag <= source now - started.
    const before = await sourceNowMs(db);
    const lag = valueOf((await scrape(app!)).samples, 'pgferry_lag_seconds')!;
    const after = await sourceNowMs(db);
    expect(lag).toBeLessThanOrEqual((after - tx!.started) / 1000 + 0.2);
    expect(lag).toBeGreaterThanOrEqual((before - tx!.started) / 1000 - 1.5);
    const { samples } = await scrape(app!);
    expect(valueOf(samples, 'pgferry_errors_total', { kind: 'apply' })).toBeGreaterThanOrEqual(1);
    expect(valueOf(samples, 'pgferry_lag_bytes')).toBeGreaterThan(0);

    await db.target.query(`ALTER TABLE items_away RENAME TO items`);
    await waitForIdentical(db.source, db.target, ['items']);
    await waitFor(async () => valueOf((await scrape(app!)).samples, 'pgferry_lag_seconds') === 0, 'lag back to 0');
    await waitFor(async () => (await app!.http.inject({ method: 'GET', url: '/readyz' })).statusCode === 200, 'ready again');
  });

  it('never shows the password: logs, /status, /metrics, errors', async () => {
    const status = (await app!.http.inject({ method: 'GET', url: '/status' })).body;
    const metrics = (await scrape(app!)).text;
    expect(lines.length).toBeGreaterThan(5);
    expect(lines.some((l) => l.includes('apply failed'))).toBe(true);
    for (const text of [...lines, status, metrics]) expect(text).not.toContain(PASSWORD);
  });
});

describe('passwords in failures', () => {
  it('never shows the password of an unreachable server, in logs, errors or /status', async () => {
    const lines: string[] = [];
    const url = `postgresql://postgres:${PASSWORD}@127.0.0.1:1/nowhere`;
    const app = await startInProcess({ source: url, target: withPassword(serverUrl('target', 'postgres')), slot: 'never_made' }, { log: captureLogger(lines) });
    const failure = await app.done.then(() => null, (err: unknown) => err);
    const status = (await app.http.inject({ method: 'GET', url: '/status' })).body;
    await app.stop();
    expect(failure).toBeInstanceOf(Error);
    for (const text of [...lines, String(failure), describeError(failure), (failure as Error).stack ?? '', status]) expect(text).not.toContain(PASSWORD);
  });

  it('never shows the password in configuration errors', () => {
    const bad = [
      { source: `postgresql://u:${PASSWORD}@h/db?sslmode=bogus`, target: `postgresql://u:${PASSWORD}@h:notaport/db` },
      { source: `postgresql://u:${PASSWORD}@h`, target: `postgres://u:${PASSWORD}@h/db?sslrootcert=/no/such/file` },
    ];
    for (const flags of bad) {
      const err = (() => {
        try {
          loadSettings(flags, {});
          return null;
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).not.toContain(PASSWORD);
    }
  });
});

async function sourceNowMs(db: TestDatabases): Promise<number> {
  const { rows: [r] } = await db.source.query<{ ms: number }>(`SELECT extract(epoch FROM clock_timestamp())::float8 * 1000 AS ms`);
  return r!.ms;
}
