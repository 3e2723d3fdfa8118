import { createRequire } from 'node:module';
import type cliProgress from 'cli-progress';
import type { MigrationStatus } from '../status.js';

/**
 * Progress bars for the initial copy on an attached terminal: one bar per table (rows copied of
 * the planner's estimate), redrawn twice a second, removed when the copy ends. Without a terminal
 * nothing is drawn; the migration logs periodic progress lines instead.
 */
export function showCopyProgress(status: MigrationStatus, stream: NodeJS.WriteStream = process.stderr): () => void {
  if (!stream.isTTY) return () => {};
  // Loaded on demand: without a terminal (a service, a container) it is never needed.
  const bar = createRequire(import.meta.url)('cli-progress') as typeof cliProgress;
  let bars: cliProgress.MultiBar | null = null;
  const perTable = new Map<string, cliProgress.SingleBar>();
  const stop = (): void => {
    clearInterval(timer);
    bars?.stop();
    bars = null;
  };
  const timer = setInterval(() => {
    if (status.phase !== 'snapshot') {
      if (bars) stop();
      return;
    }
    bars ??= new bar.MultiBar(
      { stream, format: ' {table} [{bar}] {percentage}% | {value}/{total} rows | ETA {eta_formatted}', hideCursor: true, clearOnComplete: false, etaBuffer: 20 },
      bar.Presets.shades_classic,
    );
    const width = Math.max(...[...status.tables.keys()].map((k) => k.length), 5);
    for (const [table, t] of status.tables) {
      const total = Math.max(status.estimatedRows.get(table) ?? 0, t.rowsCopied, 1);
      let bar = perTable.get(table);
      if (!bar) perTable.set(table, (bar = bars.create(total, 0, { table: table.padEnd(width) })));
      bar.setTotal(t.state === 'copied' ? Math.max(t.rowsCopied, 1) : total);
      bar.update(t.state === 'copied' ? Math.max(t.rowsCopied, 1) : t.rowsCopied, { table: table.padEnd(width) });
    }
  }, 500);
  timer.unref();
  return stop;
}
