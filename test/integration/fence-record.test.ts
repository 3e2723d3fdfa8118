import { afterEach, describe, expect, it } from 'vitest';
import { readFenceRecord, recordFence } from '../../src/cutover/fence-record.js';
import { createTestDatabases, type TestDatabases } from '../support/databases.js';

describe('the fence record', () => {
  let db: TestDatabases | undefined;
  afterEach(async () => {
    await db?.drop();
    db = undefined;
  });

  it('a cutover retried over a record its rollback left keeps the settings from before any fence', async () => {
    db = await createTestDatabases('fencerec');
    // 'other' was saved by an older version (which kept every role's setting) but not fenced.
    await recordFence(db.target, db.slot, { database: db.name, roles: ['app'], previous: new Map([['', 'off'], ['other', 'on']]) });
    // The rollback could not restore the source: it is still fenced, so a new plan reads the fence's own values.
    await recordFence(db.target, db.slot, { database: db.name, roles: ['app', 'reporting'], previous: new Map([['', 'on'], ['app', 'on'], ['reporting', 'off'], ['other', 'off']]) });
    const record = await readFenceRecord(db.target, db.slot);
    expect(record?.stage).toBe('fenced');
    expect(record?.fence.roles).toEqual(['app', 'reporting']);
    // app had no setting of its own before the fence (restored by RESET); reporting is new to the
    // fence; other was not fenced, so its current value is the one to keep.
    expect(Object.fromEntries(record!.fence.previous)).toEqual({ '': 'off', reporting: 'off', other: 'off' });
  });
});
