/**
 * `npm run bench`: pgferry against PostgreSQL's native logical replication on the same data, on
 * the same machine, in one run. Starts real source (14) and target (18) servers, then measures
 *   1. the initial copy of a generated database (seconds, MB/s),
 *   2. the apply of the same backlog of small OLTP transactions, and of bulk transactions,
 *      accumulated while both replicators were stopped (changes/s, time to drain);
 * each figure several times (rounds, the engine that goes first alternating), prints the median of
 * each and the pgferry/native ratio of the medians (and of each round), pgferry's peak memory, and
 * checks at the end that both targets are identical to the source. A script, not a test: timings
 * vary by machine, and single runs on a shared machine by tens of percent.
 *
 * Flags: --scale N (default 1: about 1.5 million rows, ~133 MB of table data), --oltp N
 * (transactions, default 20000), --bulk N (rows per bulk transaction, default 200000), --rounds N
 * (default 3), --apply-sessions N (pgferry's, default 2: the target allows the prepared
 * transactions it needs; native replication has no such setting).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
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
    this.child = spawn(process.execPath, [CLI, 'start', '--http-port', '0', ...this.args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, PGFERRY_LOG_LEVEL: 'warn' } });
    // Its warnings and errors pass through; the line each stop prints does not.
    createInterface({ input: this.child.stderr! }).on('line', (line) => {
      if (!line.startsWith('pgferry: stopping')) process.stderr.write(`${line}\n`);
    });
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

/** The middle value (the lower of the two middle ones for an even count). */
function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

async function main(): Promise<void> {
  const scale = flag('scale', 1);
  const oltp = Math.round(flag('oltp', 20_000));
  const bulkRows = Math.round(flag('bulk', 200_000));
  const rounds = Math.round(flag('rounds', 3));
  const applySessions = Math.round(flag('apply-sessions', 2));
  say(`starting PostgreSQL 14 (source) and 18 (target)...`);
  const servers: EmbeddedServer[] = await Promise.all([startEmbeddedServer(14), startEmbeddedServer(18, { settings: { max_logical_replication_workers: '8', max_sync_workers_per_subscription: '2', max_prepared_transactions: '16' } })]);
  const [source, target] = servers as [EmbeddedServer, EmbeddedServer];
  try {
    const admin = await client(source.url('postgres'));
    await admin.query('CREATE DATABASE bench');
    await admin.end();
    const tadmin = await client(target.url('postgres'));
    const src = await client(source.url('bench'));
    await src.query(SCHEMA);

    const accounts = Math.round(500_000 * scale);
    say(`generating ${accounts * 3} rows...`);
    await src.query(`INSERT INTO accounts SELECT g, g % 10000, 'account ' || g, now() FROM generate_series(1, $1::int) g`, [accounts]);
    await src.query(`INSERT INTO history (account, delta, note) SELECT g, (g % 100) - 50.25, md5(g::text) FROM generate_series(1, $1::int) g`, [accounts]);
    await src.query(`INSERT INTO items SELECT g, 'SKU-' || g, jsonb_build_object('g', g, 'tags', ARRAY['a', 'b']), g % 50 FROM generate_series(1, $1::int) g`, [accounts]);
    await src.query('VACUUM ANALYZE');
    await src.query(`CREATE PUBLICATION bench_native FOR TABLE accounts, history, items`);
    const { rows: [size] } = await src.query<{ mb: number }>(`SELECT sum(pg_table_size(c))::float8 / 1048576 AS mb FROM unnest(ARRAY['accounts', 'history', 'items']::regclass[]) c`);
    const mb = size!.mb;
    say(`source: ${(accounts * 3).toLocaleString()} rows, ${mb.toFixed(0)} MB of table data; ${rounds} round${rounds === 1 ? '' : 's'} of each figure, engines alternating; pgferry --apply-sessions ${applySessions}\n`);

    // 1. Initial copy, once per round into fresh databases; the last round's targets stay for the drains.
    let ferry: Pgferry | null = null;
    let tp: pg.Client | null = null;
    let tn: pg.Client | null = null;
    let peakMb = 0;
    const copyTimes: [number, number][] = [];
    for (let r = 0; r < rounds; r++) {
      if (ferry && tp && tn) {
        // The previous round's pair: gone before this one is timed, so both start from the same state.
        await ferry.stop();
        peakMb = Math.max(peakMb, ferry.peakRssMb);
        await dropNative(tn);
        for (const c of [tp, tn]) await c.end();
        const slots = `slot_name IN ('bench_pgferry_${r - 1}', 'bench_native_${r - 1}')`;
        await waitUntil('the slots released', async () => (await src.query(`SELECT 1 FROM pg_replication_slots WHERE active AND ${slots}`)).rowCount === 0);
        await src.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE ${slots}`);
        await src.query(`DROP PUBLICATION IF EXISTS bench_pgferry_${r - 1}`);
        await tadmin.query(`DROP DATABASE bench_pgferry_${r - 1} WITH (FORCE)`);
        await tadmin.query(`DROP DATABASE bench_native_${r - 1} WITH (FORCE)`);
      }
      await tadmin.query(`CREATE DATABASE bench_pgferry_${r}`);
      await tadmin.query(`CREATE DATABASE bench_native_${r}`);
      const ferryDb = await client(target.url(`bench_pgferry_${r}`));
      const nativeDb = await client(target.url(`bench_native_${r}`));
      // Native logical replication needs the schema on the target first (as `pg_dump --schema-only`
      // would create it); pgferry's target is an empty database: it copies the schema itself.
      await nativeDb.query(SCHEMA);
      const round = new Pgferry(['--source', source.url('bench'), '--target', target.url(`bench_pgferry_${r}`), '--slot', `bench_pgferry_${r}`, '--publication', `bench_pgferry_${r}`, '--apply-sessions', String(applySessions)]);
      const timeFerry = async (): Promise<number> => {
        await settle(src, ferryDb);
        const t0 = Date.now();
        round.start();
        await waitUntil('pgferry copy', async () => {
          round.sample();
          const { rows } = await ferryDb.query(`SELECT phase FROM pgferry.migration`).catch(() => ({ rows: [] as { phase: string }[] }));
          return rows[0]?.phase === 'streaming';
        });
        const seconds = (Date.now() - t0) / 1000;
        await quiesce(ferryDb, true, () => round.sample());
        return seconds;
      };
      const timeNative = async (): Promise<number> => {
        await settle(src, nativeDb);
        const t0 = Date.now();
        await nativeDb.query(`CREATE SUBSCRIPTION bench_native CONNECTION 'host=127.0.0.1 port=${source.port} user=postgres dbname=bench' PUBLICATION bench_native WITH (slot_name = 'bench_native_${r}')`);
        await waitUntil('native copy', async () => {
          const { rows } = await nativeDb.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_subscription_rel WHERE srsubstate <> 'r'`);
          return rows[0]!.n === 0;
        });
        const seconds = (Date.now() - t0) / 1000;
        await quiesce(nativeDb, false);
        return seconds;
      };
      copyTimes.push(r % 2 === 0 ? [await timeFerry(), await timeNative()] : (([n, f]) => [f, n] as [number, number])([await timeNative(), await timeFerry()]));
      say(`copy, round ${r + 1}: pgferry ${copyTimes[r]![0].toFixed(1)} s, native ${copyTimes[r]![1].toFixed(1)} s`);
      [ferry, tp, tn] = [round, ferryDb, nativeDb];
    }
    if (!ferry || !tp || !tn) throw new Error('--rounds must be at least 1');
    const last = rounds - 1;
    // 2. The same backlogs for both: both replicators stopped while each is written; per round the
    // engine that drains first alternates.
    const active = async (slot: string): Promise<boolean> => (await src.query(`SELECT active FROM pg_replication_slots WHERE slot_name = $1`, [slot])).rows[0]?.active === true;
    const drains = async (label: string, work: (round: number) => Promise<number>): Promise<{ changes: number; times: [number, number][] }> => {
      const times: [number, number][] = [];
      let changes = 0;
      for (let r = 0; r < rounds; r++) {
        await ferry.stop();
        await tn.query('ALTER SUBSCRIPTION bench_native DISABLE');
        await waitUntil('native stopped', async () => !(await active(`bench_native_${last}`)));
        changes = await work(r);
        // Untimed: what autovacuum would otherwise do at a random moment inside a timed drain
        // (after the copy's bulk loads, and the backlogs' updates and deletes), on all three.
        for (const c of [src, tp, tn]) await c.query('VACUUM (ANALYZE)');
        const end = await lsnNow(src);
        // Each clock starts when the replicator's replication connection is up (process start-up excluded).
        const timeFerry = async (): Promise<number> => {
          await settle(src, tp);
          ferry.start();
          await waitUntil(`pgferry connected`, () => active(`bench_pgferry_${last}`));
          const t = Date.now();
          await waitUntil(`pgferry ${label}`, async () => (ferry.sample(), slotCaughtUp(src, `bench_pgferry_${last}`, end)));
          return (Date.now() - t) / 1000;
        };
        const timeNative = async (): Promise<number> => {
          await settle(src, tn);
          await tn.query('ALTER SUBSCRIPTION bench_native ENABLE');
          await waitUntil(`native connected`, () => active(`bench_native_${last}`));
          const t = Date.now();
          await waitUntil(`native ${label}`, () => slotCaughtUp(src, `bench_native_${last}`, end));
          return (Date.now() - t) / 1000;
        };
        times.push(r % 2 === 0 ? [await timeFerry(), await timeNative()] : (([n, f]) => [f, n] as [number, number])([await timeNative(), await timeFerry()]));
        say(`${label}, round ${r + 1}: pgferry ${times[r]![0].toFixed(1)} s, native ${times[r]![1].toFixed(1)} s`);
      }
      return { changes, times };
    };
    const oltpResult = await drains('OLTP backlog', async (round) => {
      const w = await client(source.url('bench'));
      for (let i = 0; i < oltp; i++) {
        const a = (i * 7919) % accounts + 1;
        await w.query(`BEGIN; UPDATE accounts SET balance = balance + 1, updated = now() WHERE id = ${a};
          INSERT INTO history (account, delta, note) VALUES (${a}, 1, 'oltp'); UPDATE items SET qty = qty + 1 WHERE id = ${a};
          ${i % 10 === 0 ? `DELETE FROM history WHERE id = ${round * oltp + i + 1};` : ''} COMMIT`);
      }
      await w.end();
      return oltp * 3 + Math.ceil(oltp / 10);
    });
    const bulkResult = await drains('bulk backlog', async () => {
      await src.query(`INSERT INTO history (account, delta, note) SELECT g % $2::int + 1, 0.5, 'bulk' FROM generate_series(1, $1::int) g`, [bulkRows, accounts]);
      await src.query(`UPDATE items SET qty = qty + 1 WHERE id <= $1`, [bulkRows]);
      await src.query(`DELETE FROM history WHERE note = 'bulk' AND id % 2 = 0`);
      return bulkRows * 2 + Math.floor(bulkRows / 2);
    });
    ferry.sample();
    peakMb = Math.max(peakMb, ferry.peakRssMb);

    // 3. Correctness: both targets identical to the source.
    const want = JSON.stringify(await fingerprint(src, TABLES));
    const okFerry = JSON.stringify(await fingerprint(tp, TABLES)) === want;
    const okNative = JSON.stringify(await fingerprint(tn, TABLES)) === want;
    await ferry.stop();
    await dropNative(tn);
    for (const c of [src, tp, tn, tadmin]) await c.end();

    const row = (name: string, ferryV: number, nativeV: number, unit: string, higherIsBetter: boolean): string =>
      `${name.padEnd(34)} ${ferryV.toFixed(1).padStart(10)} ${nativeV.toFixed(1).padStart(10)}  ${unit.padEnd(10)} ${(higherIsBetter ? ferryV / nativeV : nativeV / ferryV).toFixed(2).padStart(6)}x`;
    const ratios = (times: [number, number][]): string => times.map(([f, n]) => `${(n / f).toFixed(2)}x`).join(' ');
    const copy = [median(copyTimes.map((t) => t[0])), median(copyTimes.map((t) => t[1]))] as const;
    const oltpT = [median(oltpResult.times.map((t) => t[0])), median(oltpResult.times.map((t) => t[1]))] as const;
    const bulkT = [median(bulkResult.times.map((t) => t[0])), median(bulkResult.times.map((t) => t[1]))] as const;
    say(`\n${'figure (median of the rounds)'.padEnd(34)} ${'pgferry'.padStart(10)} ${'native'.padStart(10)}  ${'unit'.padEnd(10)} ${'ratio'.padStart(7)}`);
    say(row('initial copy', copy[0], copy[1], 's', false));
    say(row('initial copy throughput', mb / copy[0], mb / copy[1], 'MB/s', true));
    say(row(`OLTP backlog (${oltp} txns) drain`, oltpT[0], oltpT[1], 's', false));
    say(row('OLTP apply', oltpResult.changes / oltpT[0], oltpResult.changes / oltpT[1], 'changes/s', true));
    say(row(`bulk backlog (${bulkResult.changes} changes) drain`, bulkT[0], bulkT[1], 's', false));
    say(row('bulk apply', bulkResult.changes / bulkT[0], bulkResult.changes / bulkT[1], 'changes/s', true));
    say(`ratio per round: copy ${ratios(copyTimes)}; OLTP ${ratios(oltpResult.times)}; bulk ${ratios(bulkResult.times)}`);
    say(`pgferry peak memory (VmHWM): ${peakMb.toFixed(0)} MB`);
    say(`ratio: pgferry/native, above 1 means pgferry is better`);
    say(`source and targets identical: pgferry ${okFerry ? 'yes' : 'NO'}, native ${okNative ? 'yes' : 'NO'}`);
    if (!okFerry) process.exitCode = 1;
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}

/**
 * Untimed, after an engine's copy and before the other engine's: what the copy leaves running on
 * the target (pgferry's foreign-key validation and ANALYZE after the phase turns to streaming, and
 * for both, autovacuum of the freshly loaded tables) ends first, so it never lands inside the other
 * engine's timed copy. Each engine's own copy is timed with its own background work, as before.
 */
async function quiesce(db: pg.Client, pgferry: boolean, sample = (): void => {}): Promise<void> {
  if (pgferry) {
    await waitUntil('pgferry schema finishing', async () => (sample(), (await db.query(`SELECT 1 FROM pgferry.migration WHERE schema_finished_at IS NOT NULL`)).rowCount === 1));
  }
  await db.query('VACUUM (ANALYZE)');
}

/** Drops the native subscription of the database `tn` is connected to (its slot is dropped on the source separately). */
async function dropNative(tn: pg.Client): Promise<void> {
  await tn.query('ALTER SUBSCRIPTION bench_native DISABLE');
  await tn.query('ALTER SUBSCRIPTION bench_native SET (slot_name = NONE)');
  await tn.query('DROP SUBSCRIPTION bench_native');
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
