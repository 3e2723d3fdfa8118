import type { Lsn } from '../protocol/lsn.js';
import type { PgoutputMessage } from '../protocol/pgoutput.js';

/** A streamed row change or TRUNCATE. */
export type Change = Extract<PgoutputMessage, { tag: 'insert' | 'update' | 'delete' | 'truncate' }>;

/**
 * The part of a streamed change the target does not hold yet. Streaming starts at the slot's
 * consistent point C, but a table copied by a resumed copy was read under a later snapshot, whose
 * consistent point L is in `snapshotLsns` (by source relation OID; C or absent for the others):
 * a change to it in a source transaction that committed before L (`commitLsn`, the commit LSN from
 * pgoutput's Begin) is already in its copy and must not be applied again. Only that table's part
 * is dropped: a TRUNCATE keeps the relations it lists that are not covered. Null: nothing is left.
 */
export function withoutCopied(change: Change, commitLsn: Lsn, snapshotLsns: ReadonlyMap<number, Lsn>): Change | null {
  if (snapshotLsns.size === 0) return change;
  const inCopy = (oid: number): boolean => {
    const l = snapshotLsns.get(oid);
    return l !== undefined && commitLsn < l;
  };
  if (change.tag !== 'truncate') return inCopy(change.relationOid) ? null : change;
  const rest = change.relationOids.filter((oid) => !inCopy(oid));
  if (rest.length === change.relationOids.length) return change;
  return rest.length === 0 ? null : { ...change, relationOids: rest };
}
