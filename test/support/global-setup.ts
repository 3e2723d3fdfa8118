import type { TestProject } from 'vitest/node';
import { startEmbeddedServer, type EmbeddedServer } from '../../src/embedded/server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    sourcePort: number;
    targetPort: number;
  }
}

let servers: EmbeddedServer[] = [];

/** Starts the shared servers: source PostgreSQL 14, target PostgreSQL 18. */
export async function setup(project: TestProject): Promise<void> {
  const fast = { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' };
  // The target allows prepared transactions: --apply-sessions above 1 needs them (src/apply/lanes.ts).
  servers = await Promise.all([startEmbeddedServer(14, { settings: fast }), startEmbeddedServer(18, { settings: { ...fast, max_prepared_transactions: '16' } })]);
  project.provide('sourcePort', servers[0]!.port);
  project.provide('targetPort', servers[1]!.port);
}

export async function teardown(): Promise<void> {
  await Promise.all(servers.map((s) => s.stop()));
}
