import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';

/** A fresh database pair (same name on the shared source and target servers). */
export interface TestDatabases {
  name: string;
  /** A slot name of this test's own: slot names are global to a server, shared by every test file. */
  slot: string;
  sourceUrl: string;
  targetUrl: string;
  source: pg.Client;
  target: pg.Client;
  /** Drops both databases (and the slot, which lives in the source database). */
  drop(): Promise<void>;
}

export function serverUrl(side: 'source' | 'target', database: string): string {
  const port = inject(side === 'source' ? 'sourcePort' : 'targetPort');
  return `postgresql://postgres@127.0.0.1:${port}/${database}`;
}

/** Creates a uniquely named database on both servers and connects to each. */
export async function createTestDatabases(prefix: string): Promise<TestDatabases> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  for (const side of ['source', 'target'] as const) {
    const admin = new pg.Client({ connectionString: serverUrl(side, 'postgres') });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
  }
  const source = new pg.Client({ connectionString: serverUrl('source', name) });
  const target = new pg.Client({ connectionString: serverUrl('target', name) });
  await source.connect();
  await target.connect();
  return {
    name,
    slot: `${name}_slot`,
    sourceUrl: serverUrl('source', name),
    targetUrl: serverUrl('target', name),
    source,
    target,
    async drop() {
      await source.end().catch(() => {});
      await target.end().catch(() => {});
      for (const side of ['source', 'target'] as const) {
        const admin = new pg.Client({ connectionString: serverUrl(side, 'postgres') });
        await admin.connect();
        if (side === 'source') {
          await admin.query(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, [name]);
          await waitFor(async () => (await admin.query(`SELECT 1 FROM pg_replication_slots WHERE database = $1 AND active`, [name])).rowCount === 0, 'slot released');
          await admin.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, [name]);
        }
        await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await admin.end();
      }
    },
  };
}

/** Polls `check` until it returns true or the deadline passes (then throws, naming `what`). */
export async function waitFor(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
