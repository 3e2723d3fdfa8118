import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { startEmbeddedServer, type EmbeddedServer } from '../../src/embedded/server.js';
import { clientConfig, connectClient, negotiateSsl } from '../../src/pg/connection.js';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { startInProcess, waitForIdentical } from '../support/pgferry.js';
import { makeCertificates, type TestCertificates } from '../support/tls.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

describe('a source behind TLS (sslmode=verify-full)', () => {
  let certs: TestCertificates;
  let tlsSource: EmbeddedServer;
  let db: TestDatabases;
  let app: App | undefined;
  let sourceUrl: (ca: string) => string;

  beforeAll(async () => {
    certs = makeCertificates();
    tlsSource = await startEmbeddedServer(14, { settings: { ssl: 'on', ssl_cert_file: certs.certFile, ssl_key_file: certs.keyFile } });
    db = await createTestDatabases('tls'); // the target side of this pair is used; the source is the TLS server
    const admin = new pg.Client({ connectionString: tlsSource.url('postgres') });
    await admin.connect();
    await admin.query(`CREATE DATABASE tlsdb`);
    await admin.end();
    sourceUrl = (ca) => `postgresql://postgres@localhost:${tlsSource.port}/tlsdb?sslmode=verify-full&sslrootcert=${encodeURIComponent(ca)}`;
  });

  afterAll(async () => {
    await app?.stop();
    await db?.drop();
    await tlsSource?.stop();
    if (certs) rmSync(certs.dir, { recursive: true, force: true });
  });

  it('migrates over verified TLS connections', async () => {
    const src = new pg.Client({ connectionString: tlsSource.url('tlsdb') });
    await src.connect();
    try {
      await src.query(`CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g`);
      await db.target.query(`CREATE TABLE t (id int PRIMARY KEY, v text)`);
      app = await startInProcess({ source: sourceUrl(certs.caFile), target: db.targetUrl, slot: db.slot });
      await waitFor(() => app!.status.phase === 'streaming', 'streaming');
      await src.query(`UPDATE t SET v = 'y' WHERE id < 50`);
      await waitForIdentical(src, db.target, ['t']);
      const { rows } = await src.query(
        `SELECT a.backend_type, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'pgferry'`,
      );
      expect(rows.some((r) => r.backend_type === 'walsender')).toBe(true);
      expect(rows.every((r) => r.ssl === true)).toBe(true);
    } finally {
      await src.end();
    }
  });

  it('refuses a server certificate signed by another CA, in one line', () => {
    const r = spawnSync(process.execPath, [CLI, 'start', '--http-port', '0', '--source', sourceUrl(certs.otherCaFile), '--target', db.targetUrl, '--slot', 'other'], {
      env: { PATH: process.env['PATH'] ?? '', PGFERRY_LOG_LEVEL: 'silent' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^pgferry: source: cannot connect to localhost:\d+\/tlsdb \(.*certificate/);
  });

  it('settles sslmode prefer (the default) and allow as libpq does: TLS where the server offers it (prefer) or requires it (allow)', async () => {
    const hba = join(certs.dir, 'hostssl-only.conf');
    writeFileSync(hba, 'local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n');
    const tlsOnly = await startEmbeddedServer(14, { settings: { ssl: 'on', ssl_cert_file: certs.certFile, ssl_key_file: certs.keyFile, hba_file: hba } });
    /** Whether pgferry's session to `url` is encrypted, after negotiation. */
    const encrypted = async (url: string): Promise<boolean> => {
      const config = clientConfig('--source', url);
      await negotiateSsl(config);
      const c = await connectClient(config, 'source');
      try {
        return (await c.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0]!.ssl;
      } finally {
        await c.end();
      }
    };
    try {
      const offers = `postgresql://postgres@localhost:${tlsSource.port}/tlsdb`;
      const requires = `postgresql://postgres@127.0.0.1:${tlsOnly.port}/postgres`;
      expect(await encrypted(offers)).toBe(true);
      expect(await encrypted(`${offers}?sslmode=prefer`)).toBe(true);
      expect(await encrypted(`${offers}?sslmode=allow`)).toBe(false);
      expect(await encrypted(db.targetUrl)).toBe(false); // no TLS on that server
      expect(await encrypted(`${db.targetUrl}?sslmode=prefer`)).toBe(false);
      expect(await encrypted(`${requires}?sslmode=allow`)).toBe(true);
      expect(await encrypted(requires)).toBe(true);
      const plain = clientConfig('--source', `${requires}?sslmode=disable`);
      await negotiateSsl(plain);
      await expect(connectClient(plain, 'source')).rejects.toThrow(/^source: cannot connect to .*no encryption/);
    } finally {
      await tlsOnly.stop();
    }
  });
});
