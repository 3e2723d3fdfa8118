import { describe, expect, it } from 'vitest';
import { withoutCopied, type Change } from '../../../src/snapshot/already-copied.js';

/** Table 10 copied under the slot's own snapshot (C = 100), table 20 by a resumed copy at L = 500. */
const L = new Map([[10, 100n], [20, 500n]]);
const insert = (relationOid: number): Change => ({ tag: 'insert', relationOid, newTuple: ['1'] });

describe('withoutCopied', () => {
  it('drops a change to a table whose copy already holds it: committed before that copy snapshot', () => {
    expect(withoutCopied(insert(20), 499n, L)).toBeNull();
    expect(withoutCopied({ tag: 'delete', relationOid: 20, oldKind: 'key', oldTuple: ['1'] }, 200n, L)).toBeNull();
  });

  it('keeps it from the snapshot on, and for tables copied at the consistent point or not listed', () => {
    expect(withoutCopied(insert(20), 500n, L)).toEqual(insert(20));
    expect(withoutCopied(insert(20), 501n, L)).toEqual(insert(20));
    expect(withoutCopied(insert(10), 200n, L)).toEqual(insert(10));
    expect(withoutCopied(insert(30), 1n, L)).toEqual(insert(30));
    expect(withoutCopied(insert(20), 1n, new Map())).toEqual(insert(20));
  });

  it('keeps only the relations of a TRUNCATE that the copy does not cover', () => {
    const truncate: Change = { tag: 'truncate', cascade: true, restartIdentity: true, relationOids: [10, 20, 30] };
    expect(withoutCopied(truncate, 300n, L)).toEqual({ ...truncate, relationOids: [10, 30] });
    expect(withoutCopied(truncate, 600n, L)).toEqual(truncate);
    expect(withoutCopied({ ...truncate, relationOids: [20] }, 300n, L)).toBeNull();
  });
});
