import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabases, type TestDatabases } from '../support/databases.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

/** Runs `pgferry start` to completion (it fails at preflight, so it exits by itself). */
function start(args: string[]): { code: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'start', '--http-port', '0', ...args], {
    env: { PATH: process.env['PATH'] ?? '', PGFERRY_LOG_LEVEL: 'silent' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, stderr: r.stderr };
}

describe('preflight refuses what cannot migrate safely, with the remedy', () => {
  let db: TestDatabases;

  beforeAll(async () => {
    db = await createTestDatabases('preflight');
    const ddl = `CREATE TABLE "No Key" (a int, b text); CREATE TABLE keyed (id int PRIMARY KEY); CREATE TABLE filled (id int PRIMARY KEY);`;
    await db.source.query(ddl + 'CREATE TABLE only_source (id int PRIMARY KEY);');
    await db.target.query(ddl + 'INSERT INTO filled VALUES (1);');
  });

  afterAll(async () => {
    await db?.drop();
  });

  it('names a table without key, a missing target table and a non-empty target table, without a stack trace', () => {
    const r = start(['--source', db.sourceUrl, '--target', db.targetUrl]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ALTER TABLE public."No Key" REPLICA IDENTITY FULL');
    expect(r.stderr).toContain('table public.only_source does not exist');
    expect(r.stderr).toContain('table public.filled already holds rows');
    expect(r.stderr).not.toMatch(/^\s+at /m);
    for (const line of r.stderr.trim().split('\n')) expect(line).toMatch(/^pgferry: /);
  });

  it('accepts the table once its replica identity is set, and refuses a slot that belongs to someone else', async () => {
    await db.source.query(`ALTER TABLE "No Key" REPLICA IDENTITY FULL`);
    await db.source.query(`SELECT pg_create_logical_replication_slot('foreign_slot', 'pgoutput')`);
    const r = start(['--source', db.sourceUrl, '--target', db.targetUrl, '--tables', '"No Key",keyed', '--slot', 'foreign_slot']);
    expect(r.code).toBe(1);
    expect(r.stderr).not.toContain('No Key');
    expect(r.stderr).toContain('replication slot foreign_slot already exists');
    expect(r.stderr).toContain(`pg_drop_replication_slot('foreign_slot')`);
  });

  it('reports an unreachable server as one line', () => {
    const r = start(['--source', 'postgresql://u:s3cret@127.0.0.1:1/nope', '--target', db.targetUrl]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('source: cannot connect to 127.0.0.1:1/nope');
    expect(r.stderr).not.toContain('s3cret');
  });
});
