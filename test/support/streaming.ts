import type { App } from '../../src/app.js';
import { waitFor } from './databases.js';

/** Waits for phase streaming; if the run stops first (a fatal error), fails at once with its message. */
export async function untilStreaming(app: App, timeoutMs = 120_000, what = ''): Promise<void> {
  const stopped = app.done.then(
    () => Promise.reject(new Error(`${what}pgferry stopped before streaming`)),
    (err: unknown) => Promise.reject(new Error(`${what}pgferry stopped: ${(err as Error).message}`)),
  );
  stopped.catch(() => {});
  await Promise.race([
    waitFor(() => app.status.phase === 'streaming', 'phase streaming', timeoutMs).catch((err: Error) => {
      throw new Error(`${what}${err.message} (phase ${app.status.phase}, last error: ${app.status.lastError ?? 'none'})`);
    }),
    stopped,
  ]);
}
