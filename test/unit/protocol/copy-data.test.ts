import { describe, it, expect } from 'vitest';
import { CopyDataSplitter } from '../../../src/protocol/copy-data.js';

function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

/** Runs `stream` through a splitter in the given chunk sizes; records what came out, in order. */
function split(stream: Buffer, sizes: number[]): { copyData: string[]; other: Buffer } {
  const copyData: string[] = [];
  const other: Buffer[] = [];
  const s = new CopyDataSplitter(
    (b, start, end) => copyData.push(b.toString('latin1', start, end)),
    (b) => other.push(Buffer.from(b)),
  );
  let at = 0;
  for (let i = 0; at < stream.length; i++) {
    const n = sizes[i % sizes.length]!;
    s.push(stream.subarray(at, at + n));
    at += n;
  }
  return { copyData, other: Buffer.concat(other) };
}

describe('CopyDataSplitter', () => {
  const big = Buffer.alloc(70_000, 0x61);
  const parts = [
    message('W', Buffer.from([0, 0, 0])),
    message('d', Buffer.from('w-first')),
    message('d', Buffer.alloc(0)),
    message('N', Buffer.from('notice\0\0')),
    message('d', big),
    message('d', Buffer.from('k-keepalive')),
    message('c', Buffer.alloc(0)),
    message('C', Buffer.from('COPY 0\0')),
    message('Z', Buffer.from('I')),
  ];
  const stream = Buffer.concat(parts);
  const others = Buffer.concat([parts[0]!, parts[3]!, parts[6]!, parts[7]!, parts[8]!]);
  const bodies = ['w-first', '', big.toString('latin1'), 'k-keepalive'];

  for (const sizes of [[stream.length], [1], [2, 3, 5, 7], [4], [5], [6], [4096], [65_536, 13]]) {
    it(`delivers every message once and in order when pushed in chunks of ${sizes.join(', ')}`, () => {
      const out = split(stream, sizes);
      expect(out.copyData).toEqual(bodies);
      expect(out.other.equals(others)).toBe(true);
    });
  }

  it('keeps CopyData and other messages in stream order', () => {
    const order: string[] = [];
    const s = new CopyDataSplitter(
      (b, start, end) => order.push(`d:${b.toString('utf8', start, end)}`),
      (b) => order.push(`o:${b.length}`),
    );
    s.push(Buffer.concat([message('d', Buffer.from('1')), message('N', Buffer.from('xy')), message('E', Buffer.from('z')), message('d', Buffer.from('2'))]));
    expect(order).toEqual(['d:1', 'o:13', 'd:2']);
  });

  for (const sizes of [[stream.length], [1], [3, 7], [70_010]]) {
    it(`hands runs of whole CopyData messages over unchanged in frames mode, chunks of ${sizes.join(', ')}`, () => {
      const data: Buffer[] = [];
      const other: Buffer[] = [];
      let messages = 0;
      const s = new CopyDataSplitter(
        (b, start, end, n) => {
          data.push(Buffer.from(b.subarray(start, end)));
          messages += n;
        },
        (b) => other.push(Buffer.from(b)),
        true,
      );
      for (let at = 0, i = 0; at < stream.length; at += sizes[i++ % sizes.length]!) s.push(stream.subarray(at, at + sizes[i % sizes.length]!));
      expect(messages).toBe(4);
      expect(Buffer.concat(data).equals(Buffer.concat([parts[1]!, parts[2]!, parts[4]!, parts[5]!]))).toBe(true);
      expect(Buffer.concat(other).equals(others)).toBe(true);
      expect(s.takeRest()).toBeNull();
    });
  }

  it('copies only the message split across chunks: the rest of the next chunk is delivered in place', () => {
    const delivered: Buffer[] = [];
    const s = new CopyDataSplitter((b, start, end) => delivered.push(b.subarray(start, end)), () => {}, true);
    const first = message('d', Buffer.from('split-row'));
    const next = Buffer.concat([first.subarray(6), message('d', Buffer.from('a')), message('d', Buffer.from('b'))]);
    s.push(first.subarray(0, 6));
    s.push(next);
    expect(delivered.map((b) => b.length)).toEqual([first.length, 12]);
    expect(delivered[0]!.equals(first)).toBe(true);
    expect(delivered[1]!.buffer).toBe(next.buffer); // a view of the pushed chunk, not a copy
  });

  it('hands over an incomplete message when asked', () => {
    const s = new CopyDataSplitter(() => {}, () => {});
    const m = message('Z', Buffer.from('I'));
    s.push(m.subarray(0, 3));
    expect(s.takeRest()?.equals(m.subarray(0, 3))).toBe(true);
    expect(s.takeRest()).toBeNull();
  });

  it('refuses a length that cannot be a message', () => {
    const s = new CopyDataSplitter(() => {}, () => {});
    expect(() => s.push(Buffer.from([0x64, 0, 0, 0, 2]))).toThrow(/invalid message length 2/);
  });
});
