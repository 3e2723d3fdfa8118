import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabases, type TestDatabases } from '../support/databases.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { PATH: process.env['PATH'] ?? '', PGFERRY_LOG_LEVEL: 'silent' }, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('schema copy of privileges PUBLIC has by default', () => {
  let db: TestDatabases;
  const nobody = `nobody_${process.pid}`;

  beforeAll(async () => {
    db = await createTestDatabases('privs');
    await db.source.query(`CREATE FUNCTION secret() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
      REVOKE EXECUTE ON FUNCTION secret() FROM PUBLIC;
      CREATE FUNCTION open_to_all() RETURNS int LANGUAGE sql AS 'SELECT 2';
      CREATE TYPE hidden AS ENUM ('a'); REVOKE USAGE ON TYPE hidden FROM PUBLIC;
      CREATE TYPE shown AS ENUM ('b')`);
    await db.target.query(`CREATE ROLE ${nobody}`);
  });

  afterAll(async () => {
    await db.target.query(`DROP ROLE IF EXISTS ${nobody}`).catch(() => {});
    await db?.drop();
  });

  it('keeps them revoked where the source revoked them, and nothing is left to do afterwards', async () => {
    const r = cli(['schema', '--source', db.sourceUrl, '--target', db.targetUrl]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const { rows: [p] } = await db.target.query<Record<string, boolean>>(
      `SELECT has_function_privilege($1, 'secret()', 'EXECUTE') AS secret, has_function_privilege($1, 'open_to_all()', 'EXECUTE') AS open,
              has_type_privilege($1, 'hidden', 'USAGE') AS hidden, has_type_privilege($1, 'shown', 'USAGE') AS shown`,
      [nobody],
    );
    expect(p).toEqual({ secret: false, open: true, hidden: false, shown: true });
    const again = cli(['schema', '--source', db.sourceUrl, '--target', db.targetUrl, '--dry-run']);
    expect(again.code).toBe(0);
    expect(again.stdout).not.toContain('REVOKE');
  });
});
