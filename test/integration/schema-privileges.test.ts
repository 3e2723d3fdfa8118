import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestDatabases, serverUrl, type TestDatabases } from '../support/databases.js';

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

describe('schema copy of default privileges', () => {
  let db: TestDatabases;
  const creator = `creator_${process.pid}`;
  const reader = `reader_${process.pid}`;
  const roles = `CREATE ROLE ${creator}; CREATE ROLE ${reader}`;
  /** The target's default privileges as `role|schema|kind|grantee:privilege[*]`, the creator's own left out. */
  const defaults = async (): Promise<string[]> =>
    (
      await db.target.query<{ d: string }>(
        `SELECT pg_get_userbyid(d.defaclrole) || '|' || coalesce(n.nspname, '-') || '|' || d.defaclobjtype::text || '|' ||
                CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END || ':' || a.privilege_type || CASE WHEN a.is_grantable THEN '*' ELSE '' END AS d
           FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace, aclexplode(d.defaclacl) a
          WHERE a.grantee <> d.defaclrole ORDER BY 1`,
      )
    ).rows.map((r) => r.d);

  beforeAll(async () => {
    db = await createTestDatabases('defprivs');
    await db.source.query(roles);
    await db.target.query(roles);
    await db.source.query(`CREATE SCHEMA app;
      ALTER DEFAULT PRIVILEGES FOR ROLE ${creator} IN SCHEMA app GRANT SELECT ON TABLES TO ${reader};
      ALTER DEFAULT PRIVILEGES FOR ROLE ${creator} GRANT USAGE ON SEQUENCES TO ${reader} WITH GRANT OPTION;
      ALTER DEFAULT PRIVILEGES FOR ROLE ${creator} GRANT EXECUTE ON FUNCTIONS TO ${reader};
      ALTER DEFAULT PRIVILEGES FOR ROLE ${creator} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
      ALTER DEFAULT PRIVILEGES FOR ROLE ${creator} REVOKE TRUNCATE ON TABLES FROM ${creator}`);
  });

  afterAll(async () => {
    await db?.drop(); // the databases hold the default privileges naming the roles
    for (const side of ['source', 'target'] as const) {
      const admin = new pg.Client({ connectionString: serverUrl(side, 'postgres') });
      await admin.connect();
      await admin.query(`DROP ROLE IF EXISTS ${creator}; DROP ROLE IF EXISTS ${reader}`).catch(() => {});
      await admin.end();
    }
  });

  it('sets them on the target, so what the creator makes there next gets the privileges it gets on the source', async () => {
    const r = cli(['schema', '--source', db.sourceUrl, '--target', db.targetUrl]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(await defaults()).toEqual([
      `${creator}|-|S|${reader}:USAGE*`,
      `${creator}|-|f|${reader}:EXECUTE`, // and no longer PUBLIC's built-in EXECUTE
      `${creator}|app|r|${reader}:SELECT`,
    ]);
    await db.target.query(`GRANT CREATE ON SCHEMA app TO ${creator}; SET ROLE ${creator};
      CREATE TABLE app.later (id int); CREATE FUNCTION app.later_f() RETURNS int LANGUAGE sql AS 'SELECT 1'; RESET ROLE`);
    const { rows: [p] } = await db.target.query<Record<string, boolean>>(
      `SELECT has_table_privilege($1, 'app.later', 'SELECT') AS read, has_function_privilege($1, 'app.later_f()', 'EXECUTE') AS run,
              has_function_privilege('public', 'app.later_f()', 'EXECUTE') AS "runByAll",
              (SELECT relacl::text LIKE $2 FROM pg_class WHERE oid = 'app.later'::regclass) AS "ownerLacksTruncate"`,
      [reader, `%${creator}=arwdxt%`], // every table privilege but D (TRUNCATE); m (MAINTAIN, 17+) after it
    );
    expect(p).toEqual({ read: true, run: true, runByAll: false, ownerLacksTruncate: true });
    // More on the target than on the source: brought back to the source's.
    await db.target.query(`ALTER DEFAULT PRIVILEGES FOR ROLE ${creator} IN SCHEMA app GRANT INSERT ON TABLES TO ${reader}`);
    const converge = cli(['schema', '--source', db.sourceUrl, '--target', db.targetUrl]);
    expect(converge.code, converge.stderr).toBe(0);
    expect(await defaults()).toContain(`${creator}|app|r|${reader}:SELECT`);
    expect(await defaults()).not.toContain(`${creator}|app|r|${reader}:INSERT`);
    const again = cli(['schema', '--source', db.sourceUrl, '--target', db.targetUrl, '--dry-run']);
    expect(again.code).toBe(0);
    expect(again.stdout).not.toContain('ALTER DEFAULT PRIVILEGES');
  });
});
