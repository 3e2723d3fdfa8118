import pg from 'pg';
import { loadSettings } from '../config/settings.js';
import { startApp, type App } from '../app.js';
import { startEmbeddedServer } from '../embedded/server.js';
import { createLogger } from '../observability/logger.js';
import { statusJson } from '../status.js';
import { SAMPLE_SCHEMA, fillSample, fingerprint, writeSampleTransaction } from './sample.js';

const TABLES = ['customers', 'orders', 'order_lines', 'events', 'audit_log'];

/**
 * The embedded demo behind `npm start`: a PostgreSQL 14 source with sample data and a live
 * workload, migrated into an empty-of-data PostgreSQL 18 target by the real pipeline.
 * On stop it lets the target catch up and compares every table.
 */
export async function runDemo(opts: { httpPort: number }): Promise<{ stop(): Promise<void>; done: Promise<void> }> {
  const say = (line: string): void => void process.stdout.write(`[demo] ${line}\n`);
  say('starting embedded PostgreSQL 14 (source) and 18 (target)...');
  const [source, target] = await Promise.all([startEmbeddedServer(14), startEmbeddedServer(18)]);
  const cleanup: (() => Promise<void>)[] = [() => source.stop(), () => target.stop()];
  let app: App | undefined;
  let writer: pg.Client | undefined;
  let writing = true;
  let writes = 0;
  let ticker: NodeJS.Timeout | undefined;
  const stop = async (): Promise<void> => {
    writing = false;
    if (ticker) clearInterval(ticker);
    await writerDone.catch(() => {});
    if (app) await report(app).catch((err: unknown) => say(`could not compare: ${String(err)}`));
    await app?.stop();
    await writer?.end().catch(() => {});
    for (const c of cleanup.reverse()) await c().catch(() => {});
    say('stopped; servers removed');
  };
  let writerDone: Promise<void> = Promise.resolve();
  try {
    for (const server of [source, target]) {
      const admin = new pg.Client({ connectionString: server.url('postgres') });
      await admin.connect();
      await admin.query('CREATE DATABASE shop');
      await admin.end();
      const c = new pg.Client({ connectionString: server.url('shop') });
      await c.connect();
      await c.query(SAMPLE_SCHEMA);
      if (server === source) await fillSample(c, 20_000);
      await c.end();
    }
    say(`source ${source.url('shop')} filled with sample data; target ${target.url('shop')} has the empty tables`);
    writer = new pg.Client({ connectionString: source.url('shop') });
    await writer.connect();
    const w = writer;
    writerDone = (async () => {
      while (writing) {
        await writeSampleTransaction(w, writes++);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const settings = loadSettings({ source: source.url('shop'), target: target.url('shop'), httpPort: opts.httpPort }, {});
    app = await startApp(settings, createLogger(process.env['PGFERRY_LOG_LEVEL'] ?? 'info'));
    const a = app;
    say(`pgferry is migrating; watch ${app.url}/status or ${app.url}/metrics, or run: node dist/cli.js status --url ${app.url}  (Ctrl-C stops and compares source and target)`);
    ticker = setInterval(() => {
      const s = statusJson(a.status);
      say(`phase=${String(s['phase'])} applied=${String(s['appliedLsn'])} lagBytes=${String(s['lagBytes'])} transactions=${String(s['transactionsApplied'])} sourceWrites=${writes}`);
    }, 5_000);
    return { stop, done: app.done };
  } catch (err) {
    await stop();
    throw err;
  }

  async function report(a: App): Promise<void> {
    const s = new pg.Client({ connectionString: source.url('shop') });
    const t = new pg.Client({ connectionString: target.url('shop') });
    await s.connect();
    await t.connect();
    try {
      const { rows: [r] } = await s.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
      say(`writes stopped at source LSN ${r!.lsn}; waiting for the target to catch up...`);
      const deadline = Date.now() + 60_000;
      let same = false;
      while (Date.now() < deadline && !same) {
        const [fs, ft] = await Promise.all([fingerprint(s, TABLES), fingerprint(t, TABLES)]);
        same = JSON.stringify(fs) === JSON.stringify(ft);
        if (same) for (const table of TABLES) say(`${table}: ${fs[table]} -- identical`);
        else await new Promise((res) => setTimeout(res, 500));
      }
      say(same ? 'source and target are identical' : `source and target still differ after 60 s (phase ${a.status.phase})`);
    } finally {
      await s.end();
      await t.end();
    }
  }
}
