import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { runCli, startInProcess, waitForIdentical } from '../support/pgferry.js';

/** Runs `pgferry status` without blocking this process, which serves the HTTP API it reads. */
async function status(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const { code, stdout, stderr } = await runCli(['status', ...args]);
  return { status: code, stdout, stderr };
}



describe('pgferry status', () => {
  let db: TestDatabases;
  let app: App | undefined;

  beforeAll(async () => {
    db = await createTestDatabases('statuscmd');
    await db.source.query(`CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, 'v' FROM generate_series(1, 500) g`);
    await db.target.query(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
    app = await startInProcess({ source: db.sourceUrl.replace('postgres@', 'postgres:pw-not-shown@'), target: db.targetUrl, slot: db.slot, publication: 'statuscmd_pub' });
    await waitFor(() => app!.status.phase === 'streaming' && app!.status.slotRetainedBytes !== null, 'streaming');
    await db.source.query(`UPDATE items SET v = 'u' WHERE id <= 20`);
    await waitForIdentical(db.source, db.target, ['items']);
  });

  afterAll(async () => {
    await app?.stop();
    await db?.drop();
  });

  it('prints a summary that reads at a glance', async () => {
    await waitFor(() => app!.status.changesApplied === 20, 'changes counted');
    const r = await status(['--url', app!.url]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^phase +streaming/m);
    expect(r.stdout).toMatch(/^lag +\d/m);
    expect(r.stdout).toMatch(/^changes +20 applied/m);
    expect(r.stdout).toMatch(/^slot +retains [\d.]+ (B|kB|MB) of source WAL \(warning above 10\.0 GB\), wal_status reserved/m);
    expect(r.stdout).toMatch(/^ +public\.items +copied +500 rows$/m);
    expect(r.stdout).not.toContain('pw-not-shown');
  });

  it('--json prints the /status document', async () => {
    const r = await status(['--url', app!.url, '--json']);
    expect(r.status).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ phase: 'streaming', tables: { 'public.items': { state: 'copied', rowsCopied: 500 } } });
    expect(typeof doc.lagSeconds).toBe('number');
  });

  it('an unreachable address is one line naming it and the remedy, exit 1', async () => {
    const r = await status(['--url', 'http://127.0.0.1:1']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^pgferry: cannot reach pgferry at http:\/\/127\.0\.0\.1:1 \(.*\); is pgferry start running there\? Give its address with --url or PGFERRY_URL\n$/);
  });

  it('a malformed --url exits 2', async () => {
    const r = await status(['--url', 'localhost:8484']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^pgferry: --url: "localhost:8484" is not an http:\/\/ address/);
  });
});
