import { afterEach, describe, expect, it } from 'vitest';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { startInProcess } from '../support/pgferry.js';

describe('an interrupted initial copy whose source schema changed meanwhile', () => {
  let db: TestDatabases | undefined;
  afterEach(async () => {
    await db?.drop();
    db = undefined;
  });

  it('is refused with one line that says why and what to do, instead of advice that would lose copied rows', async () => {
    db = await createTestDatabases('reschema');
    const d = db;
    await d.source.query(`CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g`);
    const flags = { source: d.sourceUrl, target: d.targetUrl, slot: d.slot, publication: `${d.name}_pub` };
    const first = await startInProcess(flags);
    await waitFor(() => first.status.phase === 'streaming', 'the copy');
    await first.stop();
    // As if the copy had been interrupted after copying t (its row says copied), then the source changed.
    await d.target.query(`UPDATE pgferry.migration SET phase = 'snapshot' WHERE slot = $1`, [d.slot]);
    await d.source.query(`ALTER TABLE t ADD COLUMN w int`);
    const second = await startInProcess(flags);
    await expect(second.done).rejects.toThrow(/^source: the schema changed while the initial copy was interrupted \(target: table .*t.* differs from the source \(.*\)\); the copy cannot be resumed: drop the migrated tables on the target \(or recreate the target database\), run pgferry cleanup, then pgferry start$/);
    await second.stop();
  });
});
