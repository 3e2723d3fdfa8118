import { describe, expect, it } from 'vitest';
import { formatStatusReport } from '../../src/status-report.js';

describe('formatStatusReport', () => {
  it('shows copy progress with percent and ETA, and flags slot retention above the threshold', () => {
    const out = formatStatusReport({
      phase: 'snapshot',
      lagBytes: 3 * 1024 * 1024,
      lagSeconds: 0,
      changesApplied: 0,
      transactionsApplied: 0,
      changesPerSecond: null,
      lastError: null,
      connected: { source: true, target: true },
      slot: { retainedWalBytes: 12 * 1024 ** 3, walStatus: 'extended', retentionWarningBytes: 10 * 1024 ** 3 },
      tables: {
        'public.orders': { state: 'copying', rowsCopied: 250_000, estimatedRows: 1_000_000, etaSeconds: 95 },
        'public.customers': { state: 'copied', rowsCopied: 20_000 },
        'public.events': { state: 'pending', rowsCopied: 0, estimatedRows: 5_000 },
      },
    });
    expect(out).toContain('lag         3.0 MB of source WAL, 0.0 s behind the source\n');
    expect(out).toContain('slot        retains 12.0 GB of source WAL (warning above 10.0 GB), wal_status extended   WARNING: above the threshold\n');
    expect(out).toContain('initial copy: 1 of 3 tables copied\n');
    expect(out).toContain('  public.orders     copying  250,000 / ~1,000,000 rows  25%  ETA 1 min 35 s\n');
    expect(out).toContain('  public.customers  copied   20,000 rows\n');
    expect(out).toContain('  public.events     pending  ~5,000 rows\n');
  });

  it('shows schema copy\'s last step while it runs or when it failed, nothing once done', () => {
    expect(formatStatusReport({ phase: 'streaming', schemaFinishing: { state: 'running', error: null } })).toContain('schema      validating foreign keys and analyzing tables (a cutover waits for it)\n');
    expect(formatStatusReport({ phase: 'streaming', schemaFinishing: { state: 'failed', error: 'boom' } })).toContain('schema      last step FAILED: boom\n');
    expect(formatStatusReport({ phase: 'streaming', schemaFinishing: { state: 'done', error: null } })).not.toContain('schema ');
  });

  it('shows large transactions applied while they run on the source, nothing when there are none', () => {
    expect(formatStatusReport({ phase: 'streaming', largeTransactions: { inProgress: 1, changes: 123456 } })).toMatch(/large txns +1 still running on the source, 123,456 changes applied ahead of the commit\n/);
    expect(formatStatusReport({ phase: 'streaming', largeTransactions: { inProgress: 0, changes: 0 } })).not.toContain('large txns');
  });

  it('copes with a document from an older pgferry (fields missing)', () => {
    expect(formatStatusReport({ phase: 'streaming' })).toMatch(/^phase +streaming\nlag +unknown\n/);
  });
});
