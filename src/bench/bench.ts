/**
 * `npm run bench`: pgferry against PostgreSQL's native logical replication on the same data, on
 * the same machine, in one run. Starts real source (14) and target (18) servers, then measures
 *   1. the initial copy of a generated database (seconds, MB/s),
 *   2. the apply of the same backlog of small OLTP transactions, and of bulk transactions,
 *      accumulated while both replicators were stopped (changes/s, time to drain),
 * prints the pgferry/native ratio of each figure and pgferry's peak memory, and checks at the end
 * that both targets are identical to the source. A script, not a test: timings vary by machine.
 *
 * Flags: --scale N (default 1: about 1.5 million rows, ~250 MB of table data), --oltp N
 * (transactions, default 20000), --bulk N (rows per bulk transaction, default 200000).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startEmbeddedServer, type EmbeddedServer } from '../embedded/server.js';
import { fingerprint } from '../demo/sample.js';

const CLI = fileURLToPath(new URL('../cli.js', import.meta.url));
const TABLES = ['accounts', 'history', 'items'];
/** An OLTP shape: keys, a foreign key with its index, a unique business key. */
const SCHEMA = `
CREATE TABLE accounts (id bigint PRIMARY KEY, balance numeric(14, 2) NOT NULL, name text NOT NULL, updated timestamptz NOT NULL);
CREATE TABLE history (id bigserial PRIMARY KEY, account bigint NOT NULL REFERENCES accounts, delta numeric(14, 2) NOT NULL, at timestamptz NOT NULL DEFAULT now(), note text);
CREATE INDEX history_account ON history (account);
CREATE TABLE items (id bigint PRIMARY KEY, sku text NOT NULL UNIQUE, payload jsonb NOT NULL, qty int NOT NULL);
`;

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
  return v;
}

const say = (line: string): void => void process.stdout.write(`${line}\n`);

async function client(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 3_600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Writes out every dirty buffer on both servers before a timed phase, so an engine never pays for
 * writing back what the one measured before it left behind.
 */
async function settle(...clients: pg.Client[]): Promise<void> {
  for (const c of clients) await c.query('CHECKPOINT');
}

async function lsnNow(src: pg.Client): Promise<string> {
  return (await src.query<{ l: string }>('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0]!.l;
}

async function slotCaughtUp(src: pg.Client, slot: string, lsn: string): Promise<boolean> {
  const { rows } = await src.query<{ ok: boolean }>(`SELECT confirmed_flush_lsn >= $2::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = $1`, [slot, lsn]);
  return rows[0]?.ok === true;
}

/** pgferry as a child process, so its own peak memory (VmHWM) can be read. */
class Pgferry {
  private child: ChildProcess | null = null;
  peakRssMb = 0;
  constructor(private readonly args: string[]) {}
  start(): void {
    this.child = spawn(process.execPath, [CLI, 'start', '--http-port', '0', ...this.args], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, PGFERRY_LOG_LEVEL: 'warn' } });
  }
  sample(): void {
    if (!this.child?.pid) return;
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.child.pid}/status`, 'utf8'));
      if (m) this.peakRssMb = Math.max(this.peakRssMb, Number(m[1]) / 1024);
    } catch {
      // exited
    }
  }
  async stop(): Promise<void> {
    const c = this.child;
    if (!c) return;
    this.sample();
    this.child = null;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGTERM');
    });
  }
}

async function main(): Promise<void> {
  const scale = flag('scale', 1);
  const oltp = Math.round(flag('oltp', 20_000));
  const bulkRows = Math.round(flag('bulk', 200_000));
  say(`starting PostgreSQL 14 (source) and 18 (target)...`);
  const servers: EmbeddedServer[] = await Promise.all([startEmbeddedServer(14), startEmbeddedServer(18, { settings: { max_logical_replication_workers: '8', max_sync_workers_per_subscription: '2' } })]);
  const [source, target] = servers as [EmbeddedServer, EmbeddedServer];
  try {
    const admin = await client(source.url('postgres'));
    await admin.query('CREATE DATABASE bench');
    await admin.end();
    const tadmin = await client(target.url('postgres'));
    await tadmin.query('CREATE DATABASE bench_pgferry');
    await tadmin.query('CREATE DATABASE bench_native');
    await tadmin.end();
    const src = await client(source.url('bench'));
    const tp = await client(target.url('bench_pgferry'));
    const tn = await client(target.url('bench_native'));
    // Native logical replication needs the schema on the target first (as `pg_dump --schema-only`
    // would create it); pgferry's target is an empty database: it copies the schema itself.
    for (const c of [src, tn]) await c.query(SCHEMA);

    const accounts = Math.round(500_000 * scale);
    say(`generating ${accounts * 3} rows...`);
    await src.query(`INSERT INTO accounts SELECT g, g % 10000, 'account ' || g, now() FROM generate_series(1, $1::int) g`, [accounts]);
    await src.query(`INSERT INTO history (account, delta, note) SELECT g, (g % 100) - 50.25, md5(g::text) FROM generate_series(1, $1::int) g`, [accounts]);
    await src.query(`INSERT INTO items SELECT g, 'SKU-' || g, jsonb_build_object('g', g, 'tags', ARRAY['a', 'b']), g % 50 FROM generate_series(1, $1::int) g`, [accounts]);
    await src.query('VACUUM ANALYZE');
    const { rows: [size] } = await src.query<{ mb: number }>(`SELECT sum(pg_table_size(c))::float8 / 1048576 AS mb FROM unnest(ARRAY['accounts', 'history', 'items']::regclass[]) c`);
    const mb = size!.mb;
    say(`source: ${(accounts * 3).toLocaleString()} rows, ${mb.toFixed(0)} MB of table data\n`);

    // 1. Initial copy.
    const ferry = new Pgferry(['--source', source.url('bench'), '--target', target.url('bench_pgferry'), '--slot', 'bench_pgferry', '--publication', 'bench_pgferry']);
    await settle(src, tp);
    let t0 = Date.now();
    ferry.start();
    await waitUntil('pgferry copy', async () => {
      ferry.sample();
      const r = await tp.query(`SELECT phase FROM pgferry.migration WHERE slot = 'bench_pgferry'`).catch(() => ({ rows: [] as { phase: string }[] }));
      return r.rows[0]?.phase === 'streaming';
    });
    const ferryCopy = (Date.now() - t0) / 1000;
    await src.query(`CREATE PUBLICATION bench_native FOR TABLE accounts, history, items`);
    await settle(src, tn);
    t0 = Date.now();
    await tn.query(`CREATE SUBSCRIPTION bench_native CONNECTION 'host=127.0.0.1 port=${source.port} user=postgres dbname=bench' PUBLICATION bench_native`);
    await waitUntil('native copy', async () => {
      const r = await tn.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_subscription_rel WHERE srsubstate <> 'r'`);
      return r.rows[0]!.n === 0;
    });
    const nativeCopy = (Date.now() - t0) / 1000;

    // 2. The same backlogs for both: both replicators stopped while it is written.
    const drain = async (label: string, work: () => Promise<number>): Promise<[number, number, number]> => {
      await ferry.stop();
      await tn.query('ALTER SUBSCRIPTION bench_native DISABLE');
      await waitUntil('native stopped', async () => (await src.query(`SELECT active FROM pg_replication_slots WHERE slot_name = 'bench_native'`)).rows[0]?.active === false);
      const changes = await work();
      const end = await lsnNow(src);
      // Each clock starts when the replicator's replication connection is up (process start-up excluded).
      const active = async (slot: string): Promise<boolean> => (await src.query(`SELECT active FROM pg_replication_slots WHERE slot_name = $1`, [slot])).rows[0]?.active === true;
      await settle(src, tp);
      ferry.start();
      await waitUntil(`pgferry connected`, () => active('bench_pgferry'));
      let t = Date.now();
      await waitUntil(`pgferry ${label}`, async () => (ferry.sample(), slotCaughtUp(src, 'bench_pgferry', end)));
      const ferrySec = (Date.now() - t) / 1000;
      await settle(src, tn);
      await tn.query('ALTER SUBSCRIPTION bench_native ENABLE');
      await waitUntil(`native connected`, () => active('bench_native'));
      t = Date.now();
      await waitUntil(`native ${label}`, () => slotCaughtUp(src, 'bench_native', end));
      const nativeSec = (Date.now() - t) / 1000;
      return [changes, ferrySec, nativeSec];
    };
    const oltpResult = await drain('OLTP backlog', async () => {
      const w = await client(source.url('bench'));
      for (let i = 0; i < oltp; i++) {
        const a = (i * 7919) % accounts + 1;
        await w.query(`BEGIN; UPDATE accounts SET balance = balance + 1, updated = now() WHERE id = ${a};
          INSERT INTO history (account, delta, note) VALUES (${a}, 1, 'oltp'); UPDATE items SET qty = qty + 1 WHERE id = ${a};
          ${i % 10 === 0 ? `DELETE FROM history WHERE id = ${i + 1};` : ''} COMMIT`);
      }
      await w.end();
      return oltp * 3 + Math.ceil(oltp / 10);
    });
    const bulkResult = await drain('bulk backlog', async () => {
      await src.query(`INSERT INTO history (account, delta, note) SELECT g % $2::int + 1, 0.5, 'bulk' FROM generate_series(1, $1::int) g`, [bulkRows, accounts]);
      await src.query(`UPDATE items SET qty = qty + 1 WHERE id <= $1`, [bulkRows]);
      await src.query(`DELETE FROM history WHERE note = 'bulk' AND id % 2 = 0`);
      return bulkRows * 2 + Math.floor(bulkRows / 2);
    });
    ferry.sample();

    // 3. Correctness: both targets identical to the source.
    const want = JSON.stringify(await fingerprint(src, TABLES));
    const okFerry = JSON.stringify(await fingerprint(tp, TABLES)) === want;
    const okNative = JSON.stringify(await fingerprint(tn, TABLES)) === want;
    await ferry.stop();
    await tn.query('ALTER SUBSCRIPTION bench_native DISABLE');
    await tn.query('ALTER SUBSCRIPTION bench_native SET (slot_name = NONE)');
    await tn.query('DROP SUBSCRIPTION bench_native');
    for (const c of [src, tp, tn]) await c.end();

    const row = (name: string, ferryV: number, nativeV: number, unit: string, higherIsBetter: boolean): string =>
      `${name.padEnd(34)} ${ferryV.toFixed(1).padStart(10)} ${nativeV.toFixed(1).padStart(10)}  ${unit.padEnd(10)} ${(higherIsBetter ? ferryV / nativeV : nativeV / ferryV).toFixed(2).padStart(6)}x`;
    say(`\n${'figure'.padEnd(34)} ${'pgferry'.padStart(10)} ${'native'.padStart(10)}  ${'unit'.padEnd(10)} ${'ratio'.padStart(7)}`);
    say(row('initial copy', ferryCopy, nativeCopy, 's', false));
    say(row('initial copy throughput', mb / ferryCopy, mb / nativeCopy, 'MB/s', true));
    say(row(`OLTP backlog (${oltp} txns) drain`, oltpResult[1], oltpResult[2], 's', false));
    say(row('OLTP apply', oltpResult[0] / oltpResult[1], oltpResult[0] / oltpResult[2], 'changes/s', true));
    say(row(`bulk backlog (${bulkResult[0]} changes) drain`, bulkResult[1], bulkResult[2], 's', false));
    say(row('bulk apply', bulkResult[0] / bulkResult[1], bulkResult[0] / bulkResult[2], 'changes/s', true));
    say(`pgferry peak memory (VmHWM): ${ferry.peakRssMb.toFixed(0)} MB`);
    say(`ratio: pgferry/native, above 1 means pgferry is better`);
    say(`source and targets identical: pgferry ${okFerry ? 'yes' : 'NO'}, native ${okNative ? 'yes' : 'NO'}`);
    if (!okFerry) process.exitCode = 1;
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
