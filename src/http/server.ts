import { timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import { statusJson, type MigrationStatus } from '../status.js';
import type { CutoverState } from '../cutover/state.js';

/** Starts a cutover and returns its state; throws an error with `name === 'CutoverRefused'` when it cannot start now. */
export type StartCutover = () => CutoverState;

/**
 * Builds the HTTP API (not listening: the caller starts it, tests use `inject`).
 * `GET /status`: the migration's state as JSON. `GET /healthz`: 200 while the process is alive
 * (liveness). `GET /readyz`: 200 while connected to both sides and not failed, else 503 with the
 * reasons (readiness). `GET /metrics`: Prometheus text format, when a registry is given.
 * `POST /cutover`: starts the cutover (202); state-changing endpoints need `Authorization: Bearer
 * <apiToken>` (401 without or with a wrong one) and stay disabled (403) when no token is configured.
 */
export function buildHttpApp(status: MigrationStatus, opts: { metrics?: Registry; apiToken?: string | undefined; cutover?: StartCutover } = {}): FastifyInstance {
  const app = Fastify({ logger: false });
  const token = opts.apiToken;
  /** Answers 403/401 and returns false unless the request carries the configured bearer token. */
  const authorized = (req: FastifyRequest, reply: FastifyReply): boolean => {
    if (!token) {
      void reply.code(403).send({ error: 'state-changing endpoints are disabled: no API token is configured; set PGFERRY_API_TOKEN (or apiToken) and restart pgferry' });
      return false;
    }
    const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
    const given = Buffer.from(m?.[1]?.trim() ?? '');
    const expected = Buffer.from(token);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      void reply.code(401).header('www-authenticate', 'Bearer').send({ error: m ? 'wrong API token; use the value of PGFERRY_API_TOKEN' : 'missing Authorization: Bearer <token> (the value of PGFERRY_API_TOKEN)' });
      return false;
    }
    return true;
  };
  app.post('/cutover', async (req, reply) => {
    if (!authorized(req, reply)) return reply;
    if (!opts.cutover) return reply.code(404).send({ error: 'cutover is not available in this process' });
    try {
      return await reply.code(202).send(opts.cutover());
    } catch (err) {
      if ((err as Error).name === 'CutoverRefused') return reply.code(409).send({ error: (err as Error).message });
      throw err;
    }
  });
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
