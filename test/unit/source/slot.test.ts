import { describe, expect, it } from 'vitest';
import { startReplicationSql } from '../../../src/source/slot.js';

describe('startReplicationSql', () => {
  it('asks for whole transactions (protocol 1) unless streaming, then protocol 2 with streaming on', () => {
    expect(startReplicationSql('my slot', 'pub', '0/16B3748')).toBe(`START_REPLICATION SLOT "my slot" LOGICAL 0/16B3748 (proto_version '1', publication_names '"pub"')`);
    expect(startReplicationSql('s', 'p', '0/1', { streaming: true, messages: true })).toBe(`START_REPLICATION SLOT "s" LOGICAL 0/1 (proto_version '2', streaming 'on', publication_names '"p"', messages 'true')`);
  });
});
