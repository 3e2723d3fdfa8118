import { describe, expect, it } from 'vitest';
import { BinaryCopyRowCounter } from '../../../src/snapshot/copy-format.js';

const int16 = (v: number): Buffer => Buffer.from([(v >> 8) & 0xff, v & 0xff]);
const int32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v);
  return b;
};
const field = (data: Buffer | null): Buffer => (data === null ? int32(-1) : Buffer.concat([int32(data.length), data]));

/** A binary COPY stream: header with a 3-byte extension, rows (whose bytes look like headers and field counts), trailer. */
const STREAM = Buffer.concat([
  Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'),
  int32(0),
  int32(3),
  Buffer.from([0xff, 0xff, 0x00]),
  int16(2), field(Buffer.from([0xff, 0xff, 0xff, 0xff])), field(null),
  int16(0),
  int16(1), field(Buffer.from('a\nb\n')),
  int16(3), field(Buffer.alloc(300, 0xff)), field(Buffer.alloc(0)), field(null),
  int16(-1),
]);

describe('BinaryCopyRowCounter', () => {
  it('counts the rows of a whole stream and stops at the trailer', () => {
    const counter = new BinaryCopyRowCounter();
    counter.push(Buffer.concat([STREAM, int16(5)]));
    expect(counter.rows).toBe(4);
  });

  it('counts the same whatever the chunk boundaries', () => {
    for (let cut = 1; cut < STREAM.length; cut++) {
      const counter = new BinaryCopyRowCounter();
      counter.push(STREAM.subarray(0, cut));
      counter.push(STREAM.subarray(cut));
      expect(counter.rows, `split at ${cut}`).toBe(4);
    }
    const bytewise = new BinaryCopyRowCounter();
    for (let i = 0; i < STREAM.length; i++) bytewise.push(STREAM.subarray(i, i + 1));
    expect(bytewise.rows).toBe(4);
  });
});
