import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { loadSettings } from '../config/settings.js';
import { startApp, type App } from '../app.js';
import { startEmbeddedServer } from '../embedded/server.js';
import { describeError } from '../errors.js';
import { createLogger } from '../observability/logger.js';
import { statusJson } from '../status.js';
import { SAMPLE_SCHEMA, fillSample, fingerprint, writeSampleTransaction } from './sample.js';

const TABLES = ['customers', 'orders', 'order_lines', 'events', 'audit_log'];
/** SQLSTATE read_only_sql_transaction: what a fenced source answers a write. */
const READ_ONLY = '25006';

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
    const connectWriter = async (): Promise<pg.Client> => {
      const c = new pg.Client({ connectionString: source.url('shop') });
      c.on('error', () => {}); // the cutover's fence terminates this session; the next write sees it
      await c.connect();
      return (writer = c);
    };
    await connectWriter();
    writerDone = (async () => {
      // `n` numbers every attempt (a commit whose answer was lost may have happened); `writes` counts acknowledged ones.
      for (let n = 0; writing; n++) {
        try {
          await writeSampleTransaction(writer!, n);
          writes++;
        } catch (err) {
          if (!writing) break;
          if ((err as { code?: string }).code === READ_ONLY) {
            writing = false;
            say(`the source is read-only (the cutover fenced it): the demo writer stopped after ${writes} writes; every one of them is on the target once the drain passes the fence. Ctrl-C compares source and target`);
            break;
          }
          // The fence ends the writer's session: reconnect; a fenced source then answers read-only.
          await writer?.end().catch(() => {});
          try {
            await connectWriter();
          } catch (connErr) {
            writing = false;
            say(`the demo writer stopped: ${describeError(err)}; reconnecting failed (${describeError(connErr)})`);
            break;
          }
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    // The demo's API token: POST /cutover needs it. No PgBouncer here, so the cutover's switch step only reports
    // that the applications must now use the target (in production that is PgBouncer's rewrite, or cutoverHook / cutoverWebhook).
    const apiToken = process.env['PGFERRY_API_TOKEN'] || randomBytes(16).toString('hex');
    const settings = loadSettings({ source: source.url('shop'), target: target.url('shop'), httpPort: opts.httpPort, apiToken }, {});
    app = await startApp(settings, createLogger(process.env['PGFERRY_LOG_LEVEL'] ?? 'info'));
    const a = app;
    say(`pgferry is migrating; watch ${app.url}/status or ${app.url}/metrics, or run: node dist/cli.js status --url ${app.url}  (Ctrl-C stops and compares source and target)`);
    say(`to watch a cutover (fence, drain, sequences, verify, switch), run in another terminal: node dist/cli.js cutover --url ${app.url} --token ${apiToken}`);
    say('the demo has no PgBouncer: the switch step cannot move the writer, so it stops when the fence makes the source read-only (in production, PgBouncer or cutoverHook moves the applications)');
    let cutoverSeen: string | null = null;
    ticker = setInterval(() => {
      const c = a.status.cutover;
      if (c && c.state !== 'running' && cutoverSeen !== c.finishedAt) {
        cutoverSeen = c.finishedAt;
        say(c.state === 'done' ? `cutover done (writes blocked ${c.writeBlockedSeconds ?? '?'} s): the target is the primary now, the source stays read-only. Ctrl-C compares source and target` : `cutover ${c.state}: ${c.error ?? 'unknown reason'}${c.state === 'rolled back' ? ' (the source takes writes again; the demo writer stays stopped)' : ''}`);
      }
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
