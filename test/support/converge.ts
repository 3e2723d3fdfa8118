import type pg from 'pg';
import { diffTables } from './compare.js';
import { waitFor } from './databases.js';

/**
 * Waits until {@link diffTables} finds no difference, then returns; on timeout throws with the last
 * differences and `context()` (e.g. pgferry's last error), so a failure names the exact values.
 */
export async function waitForNoDifferences(
  source: pg.Client,
  target: pg.Client,
  tables: string[],
  opts: { keys?: Record<string, string[]>; timeoutMs?: number; context?: () => string | Promise<string> } = {},
): Promise<void> {
  let last: string[] = [];
  try {
    await waitFor(
      async () => {
        last = await diffTables(source, target, tables, opts.keys ?? {});
        return last.length === 0;
      },
      'source and target to hold identical values',
      opts.timeoutMs ?? 90_000,
    );
  } catch (err) {
    const context = opts.context ? await opts.context() : '';
    throw new Error(`${(err as Error).message}\n${last.join('\n')}${context ? `\n${context}` : ''}`);
  }
}
