import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { statusJson, type MigrationStatus } from '../status.js';

/**
 * Builds the HTTP API (not listening: the caller starts it, tests use `inject`).
 * `GET /status`: the migration's state as JSON. `GET /healthz`: 200 while the process is alive
 * (liveness). `GET /readyz`: 200 while connected to both sides and not failed, else 503 with the
 * reasons (readiness). `GET /metrics`: Prometheus text format, when a registry is given.
 */
export function buildHttpApp(status: MigrationStatus, opts: { metrics?: Registry } = {}): FastifyInstance {
  const app = Fastify({ logger: false });
  app.get('/healthz', async () => ({ ok: true }));
  app.get('/readyz', async (_req, reply) => {
    const reasons: string[] = [];
    if (status.phase === 'failed') reasons.push(`phase is failed${status.lastError ? `: ${status.lastError}` : ''}`);
    if (!status.connected.source) reasons.push('not connected to the source');
    if (!status.connected.target) reasons.push('not connected to the target');
    return reply.code(reasons.length === 0 ? 200 : 503).send({ ready: reasons.length === 0, phase: status.phase, reasons });
  });
  app.get('/status', async () => statusJson(status));
  const registry = opts.metrics;
  if (registry) {
    app.get('/metrics', async (_req, reply) => reply.header('content-type', registry.contentType).send(await registry.metrics()));
  }
  return app;
}
