import Fastify, { type FastifyInstance } from 'fastify';
import { statusJson, type MigrationStatus } from '../status.js';

/**
 * Builds the HTTP API (not listening: the caller starts it, tests use `inject`).
 * `GET /status`: the migration's state as JSON. `GET /healthz`: 200 while the process is alive.
 */
export function buildHttpApp(status: MigrationStatus): FastifyInstance {
  const app = Fastify({ logger: false });
  app.get('/healthz', async () => ({ ok: true }));
  app.get('/status', async () => statusJson(status));
  return app;
}
