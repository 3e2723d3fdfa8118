#!/usr/bin/env node
import { Command, CommanderError, Option } from 'commander';
import { loadSettings, type RawSettings } from './config/settings.js';
import { startApp } from './app.js';
import { showCopyProgress } from './commands/progress-bars.js';
import { ConfigError, PgferryError, describeError } from './errors.js';
import { createLogger } from './observability/logger.js';

/** Exit codes: 0 done, 1 failure at run time, 2 bad input (settings, flags). */
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

function fail(err: unknown): never {
  const lines = err instanceof PgferryError ? err.message.split('\n') : [describeError(err)];
  for (const line of lines) process.stderr.write(`pgferry: ${line}\n`);
  process.exit(err instanceof ConfigError ? EXIT_USAGE : EXIT_FAILURE);
}

/**
 * Runs until SIGINT/SIGTERM (a clean stop, exit 0) or a fatal error (exit 1). A signal during
 * start-up, or a second one, exits at once (130), after `exitNow`: what must not outlive the
 * process, such as the demo's servers.
 */
async function runUntilSignal(start: () => Promise<{ stop(): Promise<void>; done: Promise<void> }>, exitNow?: () => void): Promise<void> {
  let app: { stop(): Promise<void> } | undefined;
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled || !app) {
      exitNow?.();
      process.exit(130); // progress is transactional: stopping hard is still safe
    }
    signalled = true;
    process.stderr.write(`pgferry: stopping (${signal === 'SIGINT' ? 'press Ctrl-C again' : 'send another signal'} to exit at once)\n`);
    void app.stop().then(() => process.exit(0), fail);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const started = await start();
  app = started;
  await started.done;
}

const program = new Command('pgferry')
  .description('Near-zero-downtime PostgreSQL-to-PostgreSQL migration over logical replication')
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s.startsWith('error:') ? `pgferry: ${s.slice(7)}` : s) });

program
  .command('start')
  .description('migrate SOURCE into TARGET and keep streaming changes until stopped')
  .option('--source <url>', 'source database URL (env PGFERRY_SOURCE_URL)')
  .option('--target <url>', 'target database URL (env PGFERRY_TARGET_URL)')
  .option('--config <file>', 'YAML or JSON settings file (env PGFERRY_CONFIG)')
  .option('--http-host <host>', 'HTTP API address (env PGFERRY_HTTP_HOST, default 127.0.0.1)')
  .option('--http-port <n>', 'HTTP API port (env PGFERRY_HTTP_PORT, default 8484)')
  .option('--slot <name>', 'logical replication slot on the source (env PGFERRY_SLOT, default pgferry)')
  .option('--publication <name>', 'publication on the source (env PGFERRY_PUBLICATION, default pgferry)')
  .option('--tables <list>', 'comma-separated tables, schema.table (env PGFERRY_TABLES, default all)')
  .addOption(new Option('--api-token <token>', 'bearer token for the HTTP API (env PGFERRY_API_TOKEN)').hideHelp())
  .option('--log-level <level>', 'fatal, error, warn, info, debug, trace (env PGFERRY_LOG_LEVEL, default info)')
  .option('--schema-copy <bool>', 'create the source schema on the target: true or false (env PGFERRY_SCHEMA_COPY, default true)')
  .option('--capture-ddl [bool]', 'apply schema changes made on the source while streaming (env PGFERRY_CAPTURE_DDL, default false)')
  .option('--stream-large-transactions <bool>', 'apply large source transactions while they run: true or false (env PGFERRY_STREAM_LARGE_TRANSACTIONS, default true)')
  .option('--slot-retention-warning <size>', 'warn when the slot retains more source WAL, e.g. 10GB (env PGFERRY_SLOT_RETENTION_WARNING, default 10GB)')
  .option('--copy-workers <n>', 'initial copy sessions at once, 1-64 (env PGFERRY_COPY_WORKERS, default 4)')
  .option('--apply-sessions <n>', 'target sessions applying a large group together, 1-16; above 1 needs max_prepared_transactions on the target (env PGFERRY_APPLY_SESSIONS, default 1)')
  .action(async (flags: RawSettings & { config?: string }) => {
    const settings = loadSettings(flags);
    const log = createLogger(settings.logLevel);
    await runUntilSignal(async () => {
      const app = await startApp(settings, log);
      showCopyProgress(app.status);
      return app;
    });
  });

program
  .command('cleanup')
  .description("drop pgferry's slot and publication on the source and its progress on the target (safe to run twice)")
  .option('--source <url>', 'source database URL (env PGFERRY_SOURCE_URL)')
  .option('--target <url>', 'target database URL (env PGFERRY_TARGET_URL)')
  .option('--config <file>', 'YAML or JSON settings file (env PGFERRY_CONFIG)')
  .option('--slot <name>', 'replication slot (env PGFERRY_SLOT, default pgferry)')
  .option('--publication <name>', 'publication (env PGFERRY_PUBLICATION, default pgferry)')
  .action(async (flags: RawSettings & { config?: string }) => {
    const { cleanup } = await import('./cleanup.js');
    const done = await cleanup(loadSettings(flags));
    process.stdout.write(done.length > 0 ? done.map((l) => `${l}\n`).join('') : 'nothing to clean up\n');
  });

program
  .command('status')
  .description("show a running pgferry's progress: phase, lag, changes/s, copy progress with ETA, slot retention")
  .option('--url <url>', 'address of its HTTP API (env PGFERRY_URL, default http://127.0.0.1:8484)')
  .option('--json', 'print the /status document as JSON')
  .action(async (flags: { url?: string; json?: boolean }) => {
    const { fetchStatus, formatStatusReport } = await import('./status-report.js');
    const doc = await fetchStatus(flags.url ?? (process.env['PGFERRY_URL'] || 'http://127.0.0.1:8484'), process.env['PGFERRY_API_TOKEN'] || undefined);
    process.stdout.write(flags.json ? `${JSON.stringify(doc, null, 2)}\n` : formatStatusReport(doc));
  });

program
  .command('schema')
  .description('print the DDL schema copy runs (pre-data and post-data), or apply it to --target')
  .option('--source <url>', 'source database URL (env PGFERRY_SOURCE_URL)')
  .option('--target <url>', 'target database URL (env PGFERRY_TARGET_URL); without it the full script is printed')
  .option('--tables <list>', 'comma-separated tables, schema.table (default all)')
  .option('--dry-run', 'with --target: print what the target lacks without applying it')
  .action(async (flags: { source?: string; target?: string; tables?: string; dryRun?: boolean }) => {
    const { runSchemaCommand } = await import('./commands/schema.js');
    process.exitCode = await runSchemaCommand(flags, (text) => process.stdout.write(text));
  });

program
  .command('verify')
  .description('compare every table (row counts, chunked content hashes, differing rows), sequences and schema objects')
  .option('--source <url>', 'source database URL (env PGFERRY_SOURCE_URL)')
  .option('--target <url>', 'target database URL (env PGFERRY_TARGET_URL)')
  .option('--tables <list>', 'comma-separated tables, schema.table (default all)')
  .option('--json', 'print the report as JSON')
  .option('--chunk-rows <n>', 'rows per hashed chunk (default 10000)')
  .option('--slot <name>', "the running migration's slot: differing chunks are re-read once it has caught up (env PGFERRY_SLOT, default pgferry)")
  .option('--strict-sequences', 'differing sequence values count as a difference (after cutover)')
  .action(async (flags: { source?: string; target?: string; tables?: string; json?: boolean; chunkRows?: string; slot?: string; strictSequences?: boolean }) => {
    const { runVerifyCommand } = await import('./commands/verify.js');
    const progress = (text: string): void => void (process.stderr.isTTY ? process.stderr.write(`\rverify: ${text}\u001b[K`) : undefined);
    process.exitCode = await runVerifyCommand(flags, (text) => process.stdout.write(process.stderr.isTTY ? `\r\u001b[K${text}` : text), progress);
  });

program
  .command('cutover')
  .description("move the applications to the target: fence writes on the source, drain, sync sequences, verify, switch traffic; prints each step")
  .option('--url <url>', 'address of its HTTP API (env PGFERRY_URL, default http://127.0.0.1:8484)')
  .option('--token <token>', 'the API token (env PGFERRY_API_TOKEN)')
  .action(async (flags: { url?: string; token?: string }) => {
    const { runCutoverCommand } = await import('./commands/cutover.js');
    process.exitCode = await runCutoverCommand(flags, (text) => process.stdout.write(text));
  });

program
  .command('demo')
  .description('start embedded PostgreSQL 14 (source) and 18 (target) servers with sample data and a live workload, and migrate it')
  .option('--http-port <n>', 'HTTP API port', '8484')
  .action(async (flags: { httpPort: string }) => {
    const { runDemo } = await import('./demo/demo.js');
    const { stopEmbeddedServersNow } = await import('./embedded/server.js');
    await runUntilSignal(() => runDemo({ httpPort: Number(flags.httpPort) }), stopEmbeddedServersNow);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE);
  fail(err);
});
