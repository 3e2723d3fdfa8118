import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PreflightError } from '../../src/errors.js';
import { preflightSource } from '../../src/source/preflight.js';
import { createTestDatabases, serverUrl, waitFor, type TestDatabases } from '../support/databases.js';
import { captureLogger, startInProcess } from '../support/pgferry.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

/** Runs `pgferry start` to completion (it fails at preflight, so it exits by itself). */
function start(args: string[]): { code: number | null; stderr: string; stdout: string } {
  return cli(['start', '--http-port', '0', ...args]);
}

function cli(args: string[]): { code: number | null; stderr: string; stdout: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    env: { PATH: process.env['PATH'] ?? '', PGFERRY_LOG_LEVEL: 'silent' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, stderr: r.stderr, stdout: r.stdout };
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
    // Schema copy off: with it, the missing table would simply be created.
    const r = start(['--source', db.sourceUrl, '--target', db.targetUrl, '--slot', db.slot, '--schema-copy=false']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ALTER TABLE public."No Key" REPLICA IDENTITY FULL');
    expect(r.stderr).toContain('table public.only_source does not exist');
    expect(r.stderr).toContain('table public.filled already holds rows');
    expect(r.stderr).not.toMatch(/^\s+at /m);
    for (const line of r.stderr.trim().split('\n')) expect(line).toMatch(/^pgferry: /);
  });

  it('with schema copy on, reports the source problems before writing the schema to the target', async () => {
    const r = start(['--source', db.sourceUrl, '--target', db.targetUrl, '--slot', db.slot]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ALTER TABLE public."No Key" REPLICA IDENTITY FULL');
    expect((await db.target.query(`SELECT 1 FROM pg_class WHERE relname = 'only_source'`)).rowCount).toBe(0);
    expect((await db.source.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [db.slot])).rowCount).toBe(0);
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

  it('says in one line that --capture-ddl needs a superuser when the source role is not one', async () => {
    const role = `${db.name}_plain`;
    await db.source.query(`CREATE ROLE ${role} LOGIN REPLICATION`);
    try {
      const r = start(['--source', db.sourceUrl.replace('postgres@', `${role}@`), '--target', db.targetUrl, '--tables', 'keyed', '--slot', db.slot, '--capture-ddl']);
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toBe(`pgferry: source: --capture-ddl installs an event trigger, which needs a superuser (or rds_superuser) role, and ${role} is not one; connect as one or turn captureDdl off`);
      expect((await db.source.query(`SELECT 1 FROM pg_event_trigger`)).rowCount).toBe(0);
    } finally {
      await db.source.query(`DROP ROLE ${role}`);
    }
  });

  it('warns that a SQL_ASCII source stops at a value that is not UTF-8, and says nothing for a UTF8 one', async () => {
    const name = `${db.name}_ascii`;
    await db.source.query(`CREATE DATABASE ${name} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
    const ascii = new pg.Client({ connectionString: serverUrl('source', name) });
    try {
      await ascii.connect();
      for (const [client, warned] of [[ascii, true], [db.source, false]] as const) {
        const lines: string[] = [];
        // No tables: preflight refuses, after looking at the encoding.
        await expect(preflightSource(client, [], { slotExists: false, log: captureLogger(lines) })).rejects.toThrow(PreflightError);
        expect(lines.some((l) => l.includes('encoding is SQL_ASCII') && l.includes('22021'))).toBe(warned);
      }
    } finally {
      await ascii.end().catch(() => {});
      await db.source.query(`DROP DATABASE ${name}`);
    }
  });

  it('names what a role without superuser lacks to publish the tables, and keeps a publication made for it', async () => {
    const role = `${db.name}_mig`;
    await db.source.query(`CREATE ROLE ${role} LOGIN REPLICATION; CREATE SCHEMA secret; CREATE TABLE secret.s (id int PRIMARY KEY); GRANT SELECT ON keyed, secret.s TO ${role}`);
    const as = db.sourceUrl.replace('postgres@', `${role}@`);
    const settings = ['--target', db.targetUrl, '--tables', 'keyed,secret.s', '--slot', `${db.slot}_mig`, '--publication', `${db.name}_mig`];
    try {
      const r = start(['--source', as, ...settings]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`(it needs CREATE on database ${db.name}); run GRANT CREATE ON DATABASE "${db.name}" TO "${role}"`);
      expect(r.stderr).toContain(`does not own tables public.keyed, secret.s, and publishing a table takes its owner`);
      expect(r.stderr).toContain(`run GRANT USAGE ON SCHEMA "secret" TO "${role}"`);
      expect(r.stderr).toContain(`CREATE PUBLICATION "${db.name}_mig" FOR TABLE ONLY "public"."keyed", ONLY "secret"."s" WITH (`);
      expect(r.stderr.trim().split('\n')).toHaveLength(3);
      // Made beforehand as told (and the schema usable): the same role migrates.
      const made = /\(pgferry keeps it\): (CREATE PUBLICATION [^\n]*\))/.exec(r.stderr)![1]!;
      await db.source.query(`${made}; GRANT USAGE ON SCHEMA secret TO ${role}`);
      const app = await startInProcess({ source: as, target: db.targetUrl, tables: 'keyed,secret.s', slot: `${db.slot}_mig`, publication: `${db.name}_mig` });
      try {
        await waitFor(() => app.status.phase === 'streaming', 'streaming as a role that owns nothing');
        await db.source.query(`INSERT INTO secret.s VALUES (7)`);
        await waitFor(async () => (await db.target.query(`SELECT 1 FROM secret.s WHERE id = 7`)).rowCount === 1, 'the row streamed');
      } finally {
        await app.stop();
      }
    } finally {
      expect(cli(['cleanup', '--source', db.sourceUrl, '--target', db.targetUrl, '--slot', `${db.slot}_mig`, '--publication', `${db.name}_mig`]).code).toBe(0);
      await db.source.query(`DROP SCHEMA secret CASCADE; DROP OWNED BY ${role}; DROP ROLE ${role}`);
    }
  });

  it('refuses a target role that cannot give the objects to their owners before writing anything', async () => {
    const [owner, typeOwner, user] = [`${db.name}_owner`, `${db.name}_towner`, `${db.name}_tgt`];
    // A table owned by a role the target role may give objects to, but that has no CREATE on the
    // target's public (PostgreSQL 15+ grants it to no one), and a type the table does not use,
    // owned by a role the target role cannot give objects to.
    await db.source.query(`CREATE ROLE ${owner}; CREATE ROLE ${typeOwner}; CREATE TABLE owned (id serial PRIMARY KEY); ALTER TABLE owned OWNER TO ${owner};
      CREATE TYPE mood AS ENUM ('ok'); ALTER TYPE mood OWNER TO ${typeOwner}`);
    await db.target.query(`CREATE ROLE ${owner}; CREATE ROLE ${typeOwner}; CREATE ROLE ${user} LOGIN; GRANT ${owner} TO ${user}; GRANT CREATE ON DATABASE ${db.name} TO ${user}; GRANT SET ON PARAMETER session_replication_role TO ${user}`);
    try {
      const r = start(['--source', db.sourceUrl, '--target', db.targetUrl.replace('postgres@', `${user}@`), '--tables', 'owned', '--slot', `${db.slot}_own`]);
      expect(r.code).toBe(1);
      const tail = ', connect as a superuser, or start with --schema-copy=false and create the schema yourself';
      expect(r.stderr.trim().split('\n').sort()).toEqual(
        [
          `pgferry: target: role ${owner}, which owns table "public"."owned" on the source, has no CREATE privilege on schema public on the target, which taking ownership needs; run GRANT CREATE ON SCHEMA "public" TO "${owner}"${tail}`,
          `pgferry: target: role ${user} cannot give objects to role ${typeOwner}, which owns type "public"."mood" on the source (schema copy sets the same owners); run GRANT "${typeOwner}" TO "${user}"${tail}`,
          `pgferry: target: role ${typeOwner}, which owns type "public"."mood" on the source, has no CREATE privilege on schema public on the target, which taking ownership needs; run GRANT CREATE ON SCHEMA "public" TO "${typeOwner}"${tail}`,
        ].sort(),
      );
      expect((await db.target.query(`SELECT 1 FROM pg_class WHERE relname = 'owned'`)).rowCount).toBe(0);
      expect((await db.target.query(`SELECT 1 FROM pg_type WHERE typname = 'mood'`)).rowCount).toBe(0);
      expect((await db.source.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [`${db.slot}_own`])).rowCount).toBe(0);
      // As told (and the role itself may create in public): the same start migrates, with the source's owners.
      await db.target.query(`GRANT CREATE ON SCHEMA public TO ${owner}, ${typeOwner}, ${user}; GRANT ${typeOwner} TO ${user}`);
      const app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl.replace('postgres@', `${user}@`), tables: 'owned', slot: `${db.slot}_own`, publication: `${db.name}_own` });
      try {
        await waitFor(() => app.status.phase === 'streaming' && app.status.schemaFinishing?.state === 'done', 'the migration as a non-superuser target role');
        // The serial column's sequence follows its table (ALTER SEQUENCE ... OWNER TO is refused on it).
        const { rows } = await db.target.query<{ owner: string }>(
          `SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE relname = 'owned' UNION ALL SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'owned_id_seq'
           UNION ALL SELECT pg_get_userbyid(typowner) FROM pg_type WHERE typname = 'mood'`,
        );
        expect(rows.map((x) => x.owner)).toEqual([owner, owner, typeOwner]);
      } finally {
        await app.stop();
      }
    } finally {
      expect(cli(['cleanup', '--source', db.sourceUrl, '--target', db.targetUrl, '--slot', `${db.slot}_own`, '--publication', `${db.name}_own`]).code).toBe(0);
      await db.source.query(`DROP TABLE owned; DROP TYPE mood; DROP ROLE ${owner}; DROP ROLE ${typeOwner}`);
      await db.target.query(`DROP SCHEMA IF EXISTS pgferry CASCADE; DROP TABLE IF EXISTS owned; DROP TYPE IF EXISTS mood; REVOKE CREATE ON SCHEMA public FROM ${owner}, ${typeOwner}, ${user};
        REVOKE CREATE ON DATABASE ${db.name} FROM ${user}; REVOKE SET ON PARAMETER session_replication_role FROM ${user}; DROP ROLE ${user}; DROP ROLE ${owner}; DROP ROLE ${typeOwner}`);
    }
  });

  it('reports an unreachable server as one line', () => {
    const r = start(['--source', 'postgresql://u:s3cret@127.0.0.1:1/nope', '--target', db.targetUrl]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('source: cannot connect to 127.0.0.1:1/nope');
    expect(r.stderr).not.toContain('s3cret');
  });

  it('cleanup removes the slot, the publication and the progress, and is safe to run twice', async () => {
    await db.target.query(`TRUNCATE filled`);
    await db.target.query(`CREATE TABLE only_source (id int PRIMARY KEY)`);
    const app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, tables: 'keyed,filled', slot: 'tidy', publication: 'tidy_pub' });
    try {
      await waitFor(() => app.status.phase === 'streaming', 'streaming');
    } finally {
      await app.stop();
    }
    const args = ['cleanup', '--source', db.sourceUrl, '--target', db.targetUrl, '--slot', 'tidy', '--publication', 'tidy_pub'];
    const first = cli(args);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('dropped replication slot tidy');
    expect(first.stdout).toContain('dropped publication tidy_pub');
    expect(first.stdout).toContain('dropped schema pgferry');
    expect((await db.source.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'tidy'`)).rowCount).toBe(0);
    const second = cli(args);
    expect(second.code).toBe(0);
    expect(second.stdout).toBe('nothing to clean up\n');
  });
});
