import { describe, expect, it } from 'vitest';
import { buildHttpApp } from '../../src/http/server.js';
import { MigrationStatus } from '../../src/status.js';

describe('POST /cutover authorization', () => {
  it('is disabled (403) when no API token is configured', async () => {
    const app = buildHttpApp(new MigrationStatus(), {});
    const res = await app.inject({ method: 'POST', url: '/cutover', headers: { authorization: 'Bearer anything' } });
    expect(res.statusCode).toBe(403);
    expect(res.json().error).toMatch(/PGFERRY_API_TOKEN/);
  });

  it('answers 401 without a token or with a wrong one', async () => {
    const app = buildHttpApp(new MigrationStatus(), { apiToken: 'secret' });
    expect((await app.inject({ method: 'POST', url: '/cutover' })).statusCode).toBe(401);
    expect((await app.inject({ method: 'POST', url: '/cutover', headers: { authorization: 'Bearer secreT' } })).statusCode).toBe(401);
    expect((await app.inject({ method: 'POST', url: '/cutover', headers: { authorization: 'Basic secret' } })).statusCode).toBe(401);
  });

  it('GET /status shows no cutover before one starts', async () => {
    const app = buildHttpApp(new MigrationStatus(), { apiToken: 'secret' });
    expect((await app.inject({ method: 'GET', url: '/status' })).json().cutover).toBeNull();
  });
});
