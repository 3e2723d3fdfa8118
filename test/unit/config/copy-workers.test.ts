import { describe, expect, it } from 'vitest';
import { loadSettings } from '../../../src/config/settings.js';
import { ConfigError } from '../../../src/errors.js';

const URLS = { source: 'postgresql://u@h/db', target: 'postgresql://u@h2/db' };

describe('copyWorkers', () => {
  it('defaults to 4 and comes from flags, the environment or the file', () => {
    expect(loadSettings(URLS, {}).copyWorkers).toBe(4);
    expect(loadSettings({ ...URLS, copyWorkers: '8' }, {}).copyWorkers).toBe(8);
    expect(loadSettings({ ...URLS, copyWorkers: 1 }, {}).copyWorkers).toBe(1);
    expect(loadSettings(URLS, { PGFERRY_COPY_WORKERS: ' 64 ' }).copyWorkers).toBe(64);
  });

  it.each(['0', '65', '2.5', '-1', 'many'])('refuses %s with one line naming the setting and the range', (value) => {
    expect(() => loadSettings({ ...URLS, copyWorkers: value }, {})).toThrow(
      new ConfigError(`--copy-workers: "${value}" is not a number of copy workers (1-64; each uses one source and one target connection)`),
    );
  });

  it('names the environment variable when the value came from there', () => {
    expect(() => loadSettings(URLS, { PGFERRY_COPY_WORKERS: '100' })).toThrow('PGFERRY_COPY_WORKERS: "100" is not a number of copy workers');
  });
});
