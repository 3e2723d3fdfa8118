#!/usr/bin/env node
import { Command, CommanderError, Option } from 'commander';
import { loadSettings, type RawSettings } from './config/settings.js';
import { startApp } from './app.js';
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

/** Runs until SIGINT/SIGTERM (a clean stop, exit 0) or a fatal error (exit 1). A second signal exits at once. */
async function runUntilSignal(start: () => Promise<{ stop(): Promise<void>; done: Promise<void> }>): Promise<void> {
  const app = await start();
  let signalled = false;
  const onSignal = (): void => {
    if (signalled) process.exit(130); // progress is transactional: stopping hard is still safe
    signalled = true;
    process.stderr.write('pgferry: stopping (press Ctrl-C again to exit at once)\n');
    void app.stop().then(() => process.exit(0), fail);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  await app.done;
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
  .action(async (flags: RawSettings & { config?: string }) => {
    const settings = loadSettings(flags);
    const log = createLogger(settings.logLevel);
    await runUntilSignal(() => startApp(settings, log));
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
  .command('demo')
  .description('start embedded PostgreSQL 14 (source) and 18 (target) servers with sample data and a live workload, and migrate it')
  .option('--http-port <n>', 'HTTP API port', '8484')
  .action(async (flags: { httpPort: string }) => {
    const { runDemo } = await import('./demo/demo.js');
    await runUntilSignal(() => runDemo({ httpPort: Number(flags.httpPort) }));
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE);
  fail(err);
});
