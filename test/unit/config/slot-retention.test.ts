import { describe, expect, it } from 'vitest';
import { loadSettings, parseSize } from '../../../src/config/settings.js';
import { ConfigError } from '../../../src/errors.js';

const URLS = { source: 'postgresql://u@h/db', target: 'postgresql://u@h2/db' };

describe('slotRetentionWarning', () => {
  it('defaults to 10GB and takes PostgreSQL-style sizes from flags and the environment', () => {
    expect(loadSettings(URLS, {}).slotRetentionWarningBytes).toBe(10 * 1024 ** 3);
    expect(loadSettings({ ...URLS, slotRetentionWarning: '512MB' }, {}).slotRetentionWarningBytes).toBe(512 * 1024 ** 2);
    expect(loadSettings(URLS, { PGFERRY_SLOT_RETENTION_WARNING: '2 TB' }).slotRetentionWarningBytes).toBe(2 * 1024 ** 4);
    expect(loadSettings({ ...URLS, slotRetentionWarning: 4096 }, {}).slotRetentionWarningBytes).toBe(4096);
  });

  it('names the setting and its origin when malformed', () => {
    expect(() => loadSettings(URLS, { PGFERRY_SLOT_RETENTION_WARNING: 'lots' })).toThrow(
      new ConfigError('PGFERRY_SLOT_RETENTION_WARNING: "lots" is not a size (bytes, or a number with kB, MB, GB or TB, e.g. 10GB)'),
    );
  });

  it('parseSize', () => {
    expect(parseSize('1kB')).toBe(1024);
    expect(parseSize('1.5GB')).toBe(1.5 * 1024 ** 3);
    expect(parseSize('10 gb')).toBe(10 * 1024 ** 3);
    expect(parseSize('10 GiB')).toBeNull();
    expect(parseSize('-1MB')).toBeNull();
    expect(parseSize('')).toBeNull();
  });
});
