/**
 * Lanes' routing decisions, driven with stand-in sessions that only record which session each
 * change reached (the sessions' SQL is tested against the servers in apply-sessions.test.ts).
 */
import { describe, expect, it } from 'vitest';
import type { Applier } from '../../../src/apply/applier.js';
import { Lanes } from '../../../src/apply/lanes.js';
import type { PgoutputMessage } from '../../../src/protocol/pgoutput.js';

type Relation = Extract<PgoutputMessage, { tag: 'relation' }>;
type RowChange = Extract<PgoutputMessage, { tag: 'insert' | 'update' | 'delete' | 'truncate' }>;

/** A session that records the changes it receives. */
function session(name: string, log: string[]): Applier {
  const s = {
    strict: false,
    open: false,
    relation(): void {},
    forgetPlans(): void {},
    begin(): void {
      s.open = true;
    },
    lockTimeout(): void {},
    settled: () => Promise.resolve(),
    async change(): Promise<void> {
      s.open = true;
      log.push(name);
    },
    async ddl(): Promise<void> {
      s.open = true;
    },
  };
  return s as unknown as Applier;
}

function relation(oid: number, columns: { name: string; key: boolean; type?: number }[]): Relation {
  return {
    tag: 'relation',
    relationOid: oid,
    namespace: 'public',
    name: `t${oid}`,
    replicaIdentity: 'default',
    columns: columns.map((c) => ({ name: c.name, typeOid: c.type ?? 23, typeModifier: -1, isKey: c.key })),
  };
}

const insert = (oid: number, ...values: string[]): RowChange => ({ tag: 'insert', relationOid: oid, newTuple: values });

function lanes(): { lanes: Lanes; log: string[] } {
  const log: string[] = [];
  const l = new Lanes(session('main', log), 'slot');
  l.addSession(session('helper', log));
  return { lanes: l, log };
}

const mainKeys = (l: Lanes): number => (l as unknown as { mainKeys: Set<string> }).mainKeys.size;

describe('Lanes routing', () => {
  it('spreads a large group: rows after the first 1,000 changes reach both sessions', async () => {
    const { lanes: l, log } = lanes();
    l.relation(relation(1, [{ name: 'id', key: true }]));
    for (let i = 0; i < 3_000; i++) await l.change(insert(1, String(i)));
    expect(log.slice(0, 1_000).every((s) => s === 'main')).toBe(true);
    expect(log.filter((s) => s === 'helper').length).toBeGreaterThan(500);
    expect(l.spreadInvolved).toBe(true);
  });

  it('remembers no keys of a group that cannot spread, however large', async () => {
    const { lanes: l, log } = lanes();
    l.relation(relation(1, [{ name: 'id', key: true }]));
    l.spreadable = false; // a replay on one session
    for (let i = 0; i < 20_000; i++) await l.change(insert(1, String(i)));
    expect(log.every((s) => s === 'main')).toBe(true);
    expect(mainKeys(l)).toBe(0);
    // Spreadable again later in the same group: it stays on one session (its early keys are forgotten).
    l.spreadable = true;
    for (let i = 20_000; i < 22_000; i++) await l.change(insert(1, String(i)));
    expect(log.every((s) => s === 'main')).toBe(true);
  });

  it('keeps on the main session a group that truncated a table before it spread', async () => {
    const { lanes: l, log } = lanes();
    l.relation(relation(2, [{ name: 'id', key: true }]));
    await l.change({ tag: 'truncate', cascade: false, restartIdentity: false, relationOids: [2] });
    for (let i = 0; i < 5_000; i++) await l.change(insert(2, String(i)));
    expect(log.every((s) => s === 'main')).toBe(true);
  });

  it("keeps on the main session a group in which a table's key moved to another column at the same position", async () => {
    const { lanes: l, log } = lanes();
    l.relation(relation(1, [{ name: 'a', key: true }, { name: 'b', key: false }]));
    await l.change(insert(1, 'a1', 'b1'));
    l.relation(relation(1, [{ name: 'b', key: true }])); // column a dropped, b made the key
    for (let i = 0; i < 3_000; i++) await l.change(insert(1, `b${i}`));
    expect(log.every((s) => s === 'main')).toBe(true);
  });

  it('spreads again once a group that could not is committed', async () => {
    const { lanes: l, log } = lanes();
    l.relation(relation(1, [{ name: 'id', key: true }]));
    l.spreadable = false;
    for (let i = 0; i < 2_000; i++) await l.change(insert(1, String(i)));
    (l as unknown as { reset(): void }).reset(); // what a commit or rollback does
    l.spreadable = true;
    for (let i = 2_000; i < 5_000; i++) await l.change(insert(1, String(i)));
    expect(log.filter((s) => s === 'helper').length).toBeGreaterThan(500);
  });
});
