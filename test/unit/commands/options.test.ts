import { describe, expect, it } from 'vitest';
import { commandConnections } from '../../../src/commands/options.js';
import { ConfigError } from '../../../src/errors.js';

const flags = { source: 'postgresql://alice@source.example:5432/app' };

describe('commandConnections --tables (pgferry schema, pgferry verify)', () => {
  it.each(['', ' , '])('refuses the empty list %j instead of using every table', (tables) => {
    let caught: unknown;
    try {
      commandConnections({ ...flags, tables }, { targetRequired: false }, {});
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as Error).message).toBe('--tables: the list of tables is empty; name at least one table, or leave the setting out to migrate every table');
  });

  it('uses every table when --tables is left out', () => {
    expect(commandConnections(flags, { targetRequired: false }, {}).tables).toEqual([]);
  });
});
