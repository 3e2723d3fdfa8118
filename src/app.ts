import type { FastifyInstance } from 'fastify';
import type { Settings } from './config/settings.js';
import { ConfigError, describeError } from './errors.js';
import { buildHttpApp } from './http/server.js';
import { Cutover } from './cutover/cutover.js';
import { Migration } from './migration.js';
import type { Logger } from './observability/logger.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import { describeServer } from './pg/connection.js';
import { MigrationStatus } from './status.js';

/** A running pgferry service: the migration plus its HTTP API. */
export interface App {
  status: MigrationStatus;
  metrics: Metrics;
  http: FastifyInstance;
  /** The bound HTTP address, e.g. http://127.0.0.1:8484. */
  url: string;
  /** Settles when the migration stops: resolves after {@link App.stop}, rejects on a fatal error. */
  done: Promise<void>;
  stop(): Promise<void>;
}

/** Composition root: builds every component from validated settings and starts them. */
export async function startApp(settings: Settings, log: Logger): Promise<App> {
  const status = new MigrationStatus();
  status.slotRetentionWarningBytes = settings.slotRetentionWarningBytes;
  const metrics = createMetrics(status);
  const migration = new Migration(settings, status, log.child({ component: 'migration' }), metrics);
  const cutover = new Cutover({ settings, status, log: log.child({ component: 'cutover' }), metrics, stopStreaming: () => migration.stop() });
  const http = buildHttpApp(status, { metrics: metrics.registry, apiToken: settings.apiToken, cutover: () => cutover.start() });
  let url: string;
  try {
    url = await http.listen({ host: settings.httpHost, port: settings.httpPort });
  } catch (err) {
    const code = (err as { code?: string }).code;
    const why = code === 'EADDRINUSE' ? 'is in use' : code === 'EADDRNOTAVAIL' ? 'is not an address of this host' : `cannot be used (${describeError(err)})`;
    throw new ConfigError(`--http-host/--http-port: ${settings.httpHost}:${settings.httpPort} ${why}; choose another with --http-port or PGFERRY_HTTP_PORT`);
  }
  log.info({ source: describeServer(settings.source), target: describeServer(settings.target), status: `${url}/status` }, 'pgferry started');
  const done = migration.run().catch((err: unknown) => {
    status.phase = 'failed';
    status.lastError = describeError(err);
    throw err;
  });
  done.catch(() => {}); // handled by whoever awaits `done`; a failure before that must not crash the process
  let stopped = false;
  return {
    status,
    metrics,
    http,
    url,
    done,
    async stop() {
      if (stopped) return;
      stopped = true;
      await cutover.wait();
      await migration.stop();
      await done.catch(() => {});
      await http.close();
    },
  };
}
