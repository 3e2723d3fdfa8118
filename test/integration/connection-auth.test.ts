import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabases, serverUrl, type TestDatabases } from '../support/databases.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

/** Runs the built CLI with only PATH, HOME and `env` in its environment. */
function cli(args: string[], home: string, env: Record<string, string> = {}): { code: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    env: { PATH: process.env['PATH'] ?? '', HOME: home, PGFERRY_LOG_LEVEL: 'silent', ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, stderr: r.stderr };
}

// The embedded servers trust every connection: this file puts a SCRAM line for its own role first
// in the source server's pg_hba.conf (other roles, so other test files, are unaffected) and takes
// it out afterwards.
describe('a source that asks for a SCRAM password', () => {
  const PASSWORD = 'p@ss/w#rd?';
  let db: TestDatabases;
  let admin: pg.Client;
  let hbaFile = '';
  let hbaBefore = '';
  let role = '';
  let home = '';
  let url = '';

  beforeAll(async () => {
    db = await createTestDatabases('auth');
    role = `${db.name}_scram`;
    admin = new pg.Client({ connectionString: serverUrl('source', 'postgres') });
    await admin.connect();
    await admin.query(`SET password_encryption = 'scram-sha-256'`);
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD '${PASSWORD}'`);
    hbaFile = (await admin.query<{ f: string }>(`SELECT current_setting('hba_file') AS f`)).rows[0]!.f;
    hbaBefore = readFileSync(hbaFile, 'utf8');
    writeFileSync(hbaFile, `host all ${role} 127.0.0.1/32 scram-sha-256\nhost all ${role} ::1/128 scram-sha-256\n${hbaBefore}`);
    await admin.query(`SELECT pg_reload_conf()`);
    home = mkdtempSync(join(tmpdir(), 'pgferry-home-'));
    url = db.sourceUrl.replace('postgres@', `${role}@`);
  });

  afterAll(async () => {
    if (hbaBefore) {
      writeFileSync(hbaFile, hbaBefore);
      await admin.query(`SELECT pg_reload_conf()`);
    }
    await db?.drop();
    if (role) await admin?.query(`DROP ROLE IF EXISTS ${role}`);
    await admin?.end();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  it('says in one line that no password was given and where to give it', () => {
    const r = cli(['start', '--http-port', '0', '--source', url, '--target', db.targetUrl, '--slot', db.slot], home);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      `pgferry: source: cannot connect to 127.0.0.1:${new URL(url).port}/${db.name} (the server asks for a password and none was given; put it in the URL (postgresql://user:password@host/db, special characters percent-encoded), in PGPASSWORD, or in the password file ~/.pgpass (or the file PGPASSFILE names, mode 0600))`,
    ]);
    expect(r.stderr).not.toContain('SASL');
  });

  it('takes the password from each place the message names', () => {
    const encoded = url.replace(`${role}@`, `${role}:${encodeURIComponent(PASSWORD)}@`);
    expect(cli(['schema', '--source', encoded], home).code).toBe(0);
    expect(cli(['schema', '--source', url], home, { PGPASSWORD: PASSWORD }).code).toBe(0);
    writeFileSync(join(home, '.pgpass'), `*:*:*:${role}:${PASSWORD}\n`);
    chmodSync(join(home, '.pgpass'), 0o600);
    try {
      const r = cli(['schema', '--source', url], home);
      expect(r.code).toBe(0);
      expect(r.stderr).toBe(''); // pg's own reading of the file warned that it is deprecated
    } finally {
      rmSync(join(home, '.pgpass'));
    }
    const other = join(home, 'elsewhere');
    writeFileSync(other, `*:*:*:${role}:${PASSWORD}\n`, { mode: 0o600 });
    expect(cli(['schema', '--source', url], home, { PGPASSFILE: other }).code).toBe(0);
  });

  it('tells to percent-encode a password with special characters, without printing it', () => {
    const raw = url.replace(`${role}@`, `${role}:${PASSWORD}@`);
    const r = cli(['schema', '--source', raw], home);
    // As parsed before, it connected to host "ss", database "w".
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('pgferry: --source: the URL has an @ after its host part, as when the password holds an unencoded / # or ?; percent-encode special characters in the user name and password (@ as %40, : as %3A, / as %2F, # as %23, ? as %3F)\n');
  });
});
