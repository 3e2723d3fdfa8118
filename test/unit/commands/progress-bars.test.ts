import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { showCopyProgress } from '../../../src/commands/progress-bars.js';
import { MigrationStatus } from '../../../src/status.js';
import { waitFor } from '../../support/databases.js';

function terminal(isTTY: boolean): NodeJS.WriteStream & { text: () => string } {
  const out = new PassThrough();
  let text = '';
  out.on('data', (d: Buffer) => (text += d.toString()));
  return Object.assign(out, { isTTY, columns: 120, cursorTo: () => true, moveCursor: () => true, clearLine: () => true, clearScreenDown: () => true, text: () => text }) as never;
}

describe('copy progress bars', () => {
  it('draw one bar per table on a terminal while the copy runs', async () => {
    const status = new MigrationStatus();
    status.phase = 'snapshot';
    status.tables.set('public.big', { state: 'copying', rowsCopied: 250, bytesCopied: 1 });
    status.estimatedRows.set('public.big', 1000);
    status.tables.set('public.small', { state: 'copied', rowsCopied: 10, bytesCopied: 1 });
    const tty = terminal(true);
    const stop = showCopyProgress(status, tty);
    try {
      await waitFor(() => tty.text().includes('250/1000 rows') && tty.text().includes('10/10 rows'), 'bars drawn', 5_000);
    } finally {
      stop();
    }
  });

  it('draw nothing without a terminal (while a terminal beside it does)', async () => {
    const status = new MigrationStatus();
    status.phase = 'snapshot';
    status.tables.set('public.big', { state: 'copying', rowsCopied: 250, bytesCopied: 1 });
    const plain = terminal(false);
    const tty = terminal(true);
    const stops = [showCopyProgress(status, plain), showCopyProgress(status, tty)];
    try {
      await waitFor(() => tty.text().includes('250/'), 'the terminal bars', 5_000);
      expect(plain.text()).toBe('');
    } finally {
      for (const stop of stops) stop();
    }
  });
});
