import { describe, it, expect } from 'vitest';
import {
  PgoutputDecodeError,
  PgoutputDecoder,
  UNCHANGED_TOAST,
  type PgoutputMessage,
  type TupleValue,
} from '../../../src/protocol/pgoutput.js';

/** Builds pgoutput payloads byte by byte, the way the server's logicalrep_write_* functions do. */
class Enc {
  private readonly parts: Buffer[] = [];

  private push(size: number, write: (b: Buffer) => void): this {
    const b = Buffer.alloc(size);
    write(b);
    this.parts.push(b);
    return this;
  }
  char(c: string): this {
    return this.u8(c.charCodeAt(0));
  }
  u8(n: number): this {
    return this.push(1, (b) => b.writeUInt8(n));
  }
  u16(n: number): this {
    return this.push(2, (b) => b.writeUInt16BE(n));
  }
  u32(n: number): this {
    return this.push(4, (b) => b.writeUInt32BE(n));
  }
  i32(n: number): this {
    return this.push(4, (b) => b.writeInt32BE(n));
  }
  u64(n: bigint): this {
    return this.push(8, (b) => b.writeBigUInt64BE(n));
  }
  i64(n: bigint): this {
    return this.push(8, (b) => b.writeBigInt64BE(n));
  }
  str(s: string): this {
    return this.raw(Buffer.from(s, 'utf8')).u8(0);
  }
  raw(b: Buffer): this {
    this.parts.push(Buffer.from(b));
    return this;
  }
  tuple(values: TupleValue[]): this {
    this.u16(values.length);
    for (const v of values) {
      if (v === null) this.char('n');
      else if (v === UNCHANGED_TOAST) this.char('u');
      else if (typeof v === 'string') this.char('t').i32(Buffer.byteLength(v)).raw(Buffer.from(v, 'utf8'));
      else this.char('b').i32(v.length).raw(v);
    }
    return this;
  }
  build(): Buffer {
    return Buffer.concat(this.parts);
  }
}

const msg = (tag: string): Enc => new Enc().char(tag);
const decode1 = (payload: Buffer): PgoutputMessage => new PgoutputDecoder(1).decode(payload);

const STREAM_XID = 0xfffffffe;
const streamStart = (xid = STREAM_XID, first = 1): Buffer => msg('S').u32(xid).u8(first).build();
const streamStop = (): Buffer => msg('E').build();

/** A protocol-2 decoder that is inside a stream block. */
function streamingDecoder(): PgoutputDecoder {
  const d = new PgoutputDecoder(2);
  d.decode(streamStart());
  return d;
}

const TWO_32_PLUS_1 = 0x1_0000_0001n;
const TWO_63 = 0x8000_0000_0000_0000n;
const MAX_U64 = 0xffff_ffff_ffff_ffffn;
const COMMIT_TIME = 829_400_000_000_000n; // microseconds since 2000-01-01: some 26 years later

describe('transaction messages', () => {
  it('decodes Begin', () => {
    const p = msg('B').u64(TWO_32_PLUS_1).i64(COMMIT_TIME).u32(0xffffffff).build();
    expect(decode1(p)).toStrictEqual({ tag: 'begin', finalLsn: TWO_32_PLUS_1, commitTime: COMMIT_TIME, xid: 0xffffffff });
  });

  it('decodes Commit with LSNs at and above 2^63', () => {
    const p = msg('C').u8(0).u64(TWO_63).u64(MAX_U64).i64(COMMIT_TIME).build();
    expect(decode1(p)).toStrictEqual({
      tag: 'commit',
      flags: 0,
      commitLsn: TWO_63,
      endLsn: MAX_U64,
      commitTime: COMMIT_TIME,
    });
  });

  it('reads the commit time as a signed TimestampTz', () => {
    const p = msg('C').u8(0).u64(1n).u64(2n).i64(-1n).build();
    expect(decode1(p)).toMatchObject({ commitTime: -1n });
  });

  it('decodes Origin', () => {
    const p = msg('O').u64(MAX_U64).str('pg_16385').build();
    expect(decode1(p)).toStrictEqual({ tag: 'origin', originLsn: MAX_U64, name: 'pg_16385' });
  });
});

describe('Relation and Type', () => {
  it('decodes columns, key flags, signed typmod and unsigned OIDs', () => {
    const p = msg('R')
      .u32(0xfffffff0)
      .str('My Schema')
      .str('"Quoted" Mixed Case')
      .char('i')
      .u16(3)
      .u8(1).str('Id').u32(23).i32(-1)
      .u8(0).str('first name').u32(1043).i32(14)
      .u8(1).str('"x"').u32(0xfffffffe).i32(-1)
      .build();
    expect(decode1(p)).toStrictEqual({
      tag: 'relation',
      relationOid: 0xfffffff0,
      namespace: 'My Schema',
      name: '"Quoted" Mixed Case',
      replicaIdentity: 'index',
      columns: [
        { name: 'Id', typeOid: 23, typeModifier: -1, isKey: true },
        { name: 'first name', typeOid: 1043, typeModifier: 14, isKey: false },
        { name: '"x"', typeOid: 0xfffffffe, typeModifier: -1, isKey: true },
      ],
    });
  });

  it.each([
    ['d', 'default'],
    ['n', 'nothing'],
    ['f', 'full'],
    ['i', 'index'],
  ])('maps replica identity %s to %s', (byte, identity) => {
    const p = msg('R').u32(1).str('').str('t').char(byte).u16(0).build();
    expect(decode1(p)).toMatchObject({ replicaIdentity: identity, namespace: '', columns: [] });
  });

  it('rejects an unknown replica identity', () => {
    const p = msg('R').u32(1).str('public').str('t').char('x').u16(0).build();
    expect(() => decode1(p)).toThrow(/replica identity 0x78 at offset 14/);
  });

  it('decodes Type', () => {
    const p = msg('Y').u32(16390).str('public').str('Mood Ω').build();
    expect(decode1(p)).toStrictEqual({ tag: 'type', typeOid: 16390, namespace: 'public', name: 'Mood Ω' });
  });
});

describe('tuple data', () => {
  it('keeps text as the exact server text, including multibyte UTF-8, empty and BOM', () => {
    const texts = ['€ 𝄞 日本語 é', '', '\uFEFFbom', '  12.50 ', "{\"a\": 1}"];
    const p = msg('I').u32(1).char('N').tuple(texts).build();
    expect(decode1(p)).toStrictEqual({ tag: 'insert', relationOid: 1, newTuple: texts });
  });

  it('keeps every ASCII character, beside non-ASCII values, in small tuples and in tuples too large to read at once', () => {
    const ascii = Array.from({ length: 127 }, (_, i) => String.fromCharCode(i + 1)).join('');
    for (const filler of ['', 'x'.repeat(5_000), 'é'.repeat(3_000)]) {
      const texts = [ascii, 'naïve', filler, '\\N\t', 'ok', '日本'];
      const update = msg('U').u32(1).char('O').tuple(['old é', 'old']).char('N').tuple(texts).build();
      expect(decode1(update)).toStrictEqual({ tag: 'update', relationOid: 1, oldKind: 'full', oldTuple: ['old é', 'old'], newTuple: texts });
    }
  });

  it('decodes null, unchanged TOAST and binary values', () => {
    const bin = Buffer.from([0x00, 0xff, 0x10, 0x00]);
    const p = msg('I').u32(1).char('N').tuple([null, UNCHANGED_TOAST, bin, Buffer.alloc(0)]).build();
    const m = decode1(p);
    expect(m).toStrictEqual({ tag: 'insert', relationOid: 1, newTuple: [null, UNCHANGED_TOAST, bin, Buffer.alloc(0)] });
  });

  it('copies binary values and message content out of the payload', () => {
    const p = msg('I').u32(1).char('N').tuple([Buffer.from('abc')]).build();
    const m = decode1(p);
    p.fill(0);
    expect(m).toMatchObject({ newTuple: [Buffer.from('abc')] });

    const q = msg('M').u8(0).u64(1n).str('p').i32(3).raw(Buffer.from('xyz')).build();
    const n = decode1(q);
    q.fill(0);
    expect(n).toMatchObject({ content: Buffer.from('xyz') });
  });

  it('rejects an unknown column kind and a negative length', () => {
    const bad = msg('I').u32(1).char('N').u16(1).char('x').build();
    expect(() => decode1(bad)).toThrow(/column 0 kind 0x78 at offset 8/);
    const neg = msg('I').u32(1).char('N').u16(1).char('t').i32(-2).build();
    expect(() => decode1(neg)).toThrow(/negative column 0 text length -2 at offset 9/);
  });

  it('decodes a payload that starts inside a larger buffer, reporting offsets from the payload', () => {
    const header = Buffer.alloc(25, 0xee); // as XLogData's header would precede it
    const good = msg('I').u32(1).char('N').u16(1).char('t').i32(2).raw(Buffer.from('hi')).build();
    expect(new PgoutputDecoder(1).decode(Buffer.concat([header, good]), 25)).toEqual({ tag: 'insert', relationOid: 1, newTuple: ['hi'] });
    const bad = msg('I').u32(1).char('N').u16(1).char('x').build();
    expect(() => new PgoutputDecoder(1).decode(Buffer.concat([header, bad]), 25)).toThrow(/^pgoutput 'I' message: unknown column 0 kind 0x78 at offset 8$/);
    expect(() => new PgoutputDecoder(1).decode(Buffer.concat([header, streamStart()]), 25)).toThrow(/protocol version 1 at offset 0/);
    expect(() => new PgoutputDecoder(1).decode(header, 25)).toThrow(/empty message/);
  });

  it('decodes a payload that ends before its buffer does, and reads nothing past that end', () => {
    const header = Buffer.alloc(25, 0xee);
    const good = msg('I').u32(1).char('N').u16(1).char('t').i32(2).raw(Buffer.from('hi')).build();
    const next = msg('I').u32(2).char('N').u16(1).char('t').i32(3).raw(Buffer.from('abc')).build(); // the next message in the same chunk
    const buf = Buffer.concat([header, good, next]);
    const end = 25 + good.length;
    expect(new PgoutputDecoder(1).decode(buf, 25, end)).toEqual({ tag: 'insert', relationOid: 1, newTuple: ['hi'] });
    expect(new PgoutputDecoder(1).decode(buf, end, buf.length)).toEqual({ tag: 'insert', relationOid: 2, newTuple: ['abc'] });
    // One byte short: truncated, though the bytes are in the buffer.
    expect(() => new PgoutputDecoder(1).decode(buf, 25, end - 1)).toThrow(/^pgoutput 'I' message: truncated column 0 text \(need 2 bytes, have 1\) at offset 13$/);
    // A name whose NUL lies past the end is unterminated.
    const origin = msg('O').u64(7n).raw(Buffer.from('name\0')).build();
    const two = Buffer.concat([origin, origin]);
    expect(() => new PgoutputDecoder(1).decode(two, 0, origin.length - 1)).toThrow(/unterminated origin name/);
    expect(new PgoutputDecoder(1).decode(two, 0, origin.length)).toMatchObject({ tag: 'origin', name: 'name' });
    expect(() => new PgoutputDecoder(1).decode(buf, 25, 25)).toThrow(/empty message/);
  });

  it('refuses text that is not UTF-8 rather than storing U+FFFD in its place, and passes a real U+FFFD', () => {
    const insert = (bytes: number[]): Buffer => msg('I').u32(1).char('N').u16(1).char('t').i32(bytes.length).raw(Buffer.from(bytes)).build();
    // A SQL_ASCII source can hold any byte: a lone 0xE9 (Latin-1 'é'), a surrogate encoded as UTF-8.
    expect(() => decode1(insert([0x63, 0x61, 0x66, 0xe9]))).toThrow(/^pgoutput 'I' message: column 0 text is not valid UTF-8 \(error 22021/);
    expect(() => decode1(insert([0xed, 0xa0, 0x80]))).toThrow(/column 0 text is not valid UTF-8 .* at offset 13$/);
    expect(decode1(insert([0x61, 0xef, 0xbf, 0xbd, 0x62]))).toEqual({ tag: 'insert', relationOid: 1, newTuple: ['a\uFFFDb'] });
    const origin = msg('O').u64(7n).raw(Buffer.from([0x6e, 0xff, 0])).build();
    expect(() => decode1(origin)).toThrow(/origin name is not valid UTF-8/);
  });

  it('rejects an Insert without the N marker', () => {
    expect(() => decode1(msg('I').u32(1).char('K').tuple([]).build())).toThrow(PgoutputDecodeError);
  });
});

describe('Update and Delete', () => {
  it('decodes Update without old tuple', () => {
    const p = msg('U').u32(7).char('N').tuple(['1', UNCHANGED_TOAST]).build();
    expect(decode1(p)).toStrictEqual({
      tag: 'update',
      relationOid: 7,
      oldKind: null,
      oldTuple: null,
      newTuple: ['1', UNCHANGED_TOAST],
    });
  });

  it('decodes Update with a K (key) old tuple', () => {
    const p = msg('U').u32(7).char('K').tuple(['1', null]).char('N').tuple(['2', 'b']).build();
    expect(decode1(p)).toStrictEqual({
      tag: 'update',
      relationOid: 7,
      oldKind: 'key',
      oldTuple: ['1', null],
      newTuple: ['2', 'b'],
    });
  });

  it('decodes Update with an O (full) old tuple', () => {
    const p = msg('U').u32(7).char('O').tuple(['1', 'a']).char('N').tuple(['1', 'b']).build();
    expect(decode1(p)).toStrictEqual({
      tag: 'update',
      relationOid: 7,
      oldKind: 'full',
      oldTuple: ['1', 'a'],
      newTuple: ['1', 'b'],
    });
  });

  it('rejects Update markers other than K, O, N', () => {
    expect(() => decode1(msg('U').u32(7).char('X').tuple([]).build())).toThrow(/'K', 'O' or 'N'.*offset 5/);
    expect(() => decode1(msg('U').u32(7).char('K').tuple([]).char('K').tuple([]).build())).toThrow(
      /expected tuple marker 'N' at offset 8/,
    );
  });

  it.each([
    ['K', 'key'],
    ['O', 'full'],
  ] as const)('decodes Delete with a %s old tuple', (marker, kind) => {
    const p = msg('D').u32(9).char(marker).tuple(['42', null]).build();
    expect(decode1(p)).toStrictEqual({ tag: 'delete', relationOid: 9, oldKind: kind, oldTuple: ['42', null] });
  });

  it('rejects Delete with an N marker', () => {
    expect(() => decode1(msg('D').u32(9).char('N').tuple([]).build())).toThrow(/'K' or 'O' at offset 5/);
  });
});

describe('Truncate and Message', () => {
  it.each([
    [0, false, false],
    [1, true, false],
    [2, false, true],
    [3, true, true],
  ])('decodes Truncate options %i', (options, cascade, restartIdentity) => {
    const p = msg('T').u32(2).u8(options).u32(16384).u32(0xffffffff).build();
    expect(decode1(p)).toStrictEqual({
      tag: 'truncate',
      cascade,
      restartIdentity,
      relationOids: [16384, 0xffffffff],
    });
  });

  it('decodes transactional and non-transactional Message', () => {
    const content = Buffer.from([0xde, 0xad, 0x00, 0xbe, 0xef]);
    const t = msg('M').u8(1).u64(TWO_63 + 5n).str('pgferry/fence').i32(content.length).raw(content).build();
    expect(decode1(t)).toStrictEqual({
      tag: 'message',
      transactional: true,
      lsn: TWO_63 + 5n,
      prefix: 'pgferry/fence',
      content,
    });
    const n = msg('M').u8(0).u64(TWO_32_PLUS_1).str('').i32(0).build();
    expect(decode1(n)).toStrictEqual({
      tag: 'message',
      transactional: false,
      lsn: TWO_32_PLUS_1,
      prefix: '',
      content: Buffer.alloc(0),
    });
  });
});

describe('streaming (protocol 2)', () => {
  it('carries xid on data messages inside Stream Start..Stop and not outside', () => {
    const d = new PgoutputDecoder(2);
    const insert = (withXid: boolean): Buffer =>
      (withXid ? msg('I').u32(STREAM_XID) : msg('I')).u32(5).char('N').tuple(['v']).build();

    expect(d.decode(insert(false))).toStrictEqual({ tag: 'insert', relationOid: 5, newTuple: ['v'] });
    expect(d.decode(streamStart(STREAM_XID, 1))).toStrictEqual({ tag: 'streamStart', xid: STREAM_XID, firstSegment: true });
    expect(d.decode(insert(true))).toStrictEqual({ tag: 'insert', xid: STREAM_XID, relationOid: 5, newTuple: ['v'] });
    expect(d.decode(streamStop())).toStrictEqual({ tag: 'streamStop' });
    expect(d.decode(insert(false))).toStrictEqual({ tag: 'insert', relationOid: 5, newTuple: ['v'] });
    expect(d.decode(streamStart(STREAM_XID, 0))).toStrictEqual({ tag: 'streamStart', xid: STREAM_XID, firstSegment: false });
  });

  it('reads the xid of every data message inside a block', () => {
    const d = streamingDecoder();
    const x = (tag: string): Enc => msg(tag).u32(STREAM_XID);
    expect(d.decode(x('R').u32(1).str('s').str('t').char('f').u16(0).build())).toMatchObject({ tag: 'relation', xid: STREAM_XID });
    expect(d.decode(x('Y').u32(1).str('s').str('t').build())).toMatchObject({ tag: 'type', xid: STREAM_XID });
    expect(d.decode(x('U').u32(1).char('N').tuple([]).build())).toMatchObject({ tag: 'update', xid: STREAM_XID });
    expect(d.decode(x('D').u32(1).char('K').tuple([]).build())).toMatchObject({ tag: 'delete', xid: STREAM_XID });
    expect(d.decode(x('T').u32(1).u8(1).u32(3).build())).toMatchObject({ tag: 'truncate', xid: STREAM_XID, cascade: true });
    expect(d.decode(x('M').u8(1).u64(1n).str('p').i32(0).build())).toMatchObject({ tag: 'message', xid: STREAM_XID });
    // Origin is sent right after Stream Start and has no xid field.
    expect(d.decode(msg('O').u64(1n).str('o').build())).toStrictEqual({ tag: 'origin', originLsn: 1n, name: 'o' });
  });

  it('decodes Stream Commit and Stream Abort', () => {
    const d = new PgoutputDecoder(2);
    const c = msg('c').u32(STREAM_XID).u8(0).u64(TWO_63).u64(MAX_U64).i64(COMMIT_TIME).build();
    expect(d.decode(c)).toStrictEqual({
      tag: 'streamCommit',
      xid: STREAM_XID,
      flags: 0,
      commitLsn: TWO_63,
      endLsn: MAX_U64,
      commitTime: COMMIT_TIME,
    });
    expect(d.decode(msg('A').u32(STREAM_XID).u32(0xffffffff).build())).toStrictEqual({
      tag: 'streamAbort',
      xid: STREAM_XID,
      subXid: 0xffffffff,
    });
  });

  it('rejects streaming messages in protocol 1', () => {
    for (const p of [streamStart(), streamStop(), msg('A').u32(1).u32(1).build()]) {
      expect(() => decode1(p)).toThrow(/protocol version 1 at offset 0/);
    }
  });

  it('rejects unpaired Stream Start/Stop and transaction control inside a block', () => {
    expect(() => new PgoutputDecoder(2).decode(streamStop())).toThrow(/Stream Stop without Stream Start/);
    const d = streamingDecoder();
    expect(() => d.decode(streamStart())).toThrow(/inside a stream block/);
    expect(() => d.decode(msg('B').u64(1n).i64(1n).u32(1).build())).toThrow(/inside a stream block/);
    expect(() => d.decode(msg('A').u32(1).u32(1).build())).toThrow(/inside a stream block/);
  });

  it('leaves the stream state unchanged when a message is rejected', () => {
    const d = new PgoutputDecoder(2);
    expect(() => d.decode(streamStart().subarray(0, 3))).toThrow(PgoutputDecodeError);
    expect(d.decode(msg('I').u32(5).char('N').tuple([]).build())).toStrictEqual({ tag: 'insert', relationOid: 5, newTuple: [] });
  });
});

/** One valid payload per tag, with the decoder state it needs. */
const FIXTURES: { name: string; decoder: () => PgoutputDecoder; payload: Buffer }[] = [
  { name: 'Begin', decoder: () => new PgoutputDecoder(1), payload: msg('B').u64(1n).i64(2n).u32(3).build() },
  { name: 'Commit', decoder: () => new PgoutputDecoder(1), payload: msg('C').u8(0).u64(1n).u64(2n).i64(3n).build() },
  { name: 'Origin', decoder: () => new PgoutputDecoder(1), payload: msg('O').u64(1n).str('orïgin').build() },
  {
    name: 'Relation',
    decoder: () => new PgoutputDecoder(1),
    payload: msg('R').u32(1).str('public').str('T').char('d').u16(2).u8(1).str('id').u32(23).i32(-1).u8(0).str('é').u32(25).i32(-1).build(),
  },
  { name: 'Type', decoder: () => new PgoutputDecoder(1), payload: msg('Y').u32(1).str('public').str('mood').build() },
  {
    name: 'Insert',
    decoder: () => new PgoutputDecoder(1),
    payload: msg('I').u32(16384).char('N').tuple(['1', '日本', '', null, UNCHANGED_TOAST, Buffer.from([1, 2])]).build(),
  },
  { name: 'Update', decoder: () => new PgoutputDecoder(1), payload: msg('U').u32(1).char('O').tuple(['a']).char('N').tuple(['b']).build() },
  { name: 'Delete', decoder: () => new PgoutputDecoder(1), payload: msg('D').u32(1).char('K').tuple(['a', null]).build() },
  { name: 'Truncate', decoder: () => new PgoutputDecoder(1), payload: msg('T').u32(2).u8(3).u32(1).u32(2).build() },
  { name: 'Message', decoder: () => new PgoutputDecoder(1), payload: msg('M').u8(1).u64(1n).str('p').i32(2).raw(Buffer.from('hi')).build() },
  { name: 'Stream Start', decoder: () => new PgoutputDecoder(2), payload: streamStart() },
  { name: 'Stream Stop', decoder: streamingDecoder, payload: streamStop() },
  { name: 'streamed Insert', decoder: streamingDecoder, payload: msg('I').u32(9).u32(1).char('N').tuple(['x']).build() },
  { name: 'Stream Commit', decoder: () => new PgoutputDecoder(2), payload: msg('c').u32(1).u8(0).u64(1n).u64(2n).i64(3n).build() },
  { name: 'Stream Abort', decoder: () => new PgoutputDecoder(2), payload: msg('A').u32(1).u32(2).build() },
];

describe('framing', () => {
  it.each(FIXTURES)('decodes the $name fixture', ({ decoder, payload }) => {
    expect(() => decoder().decode(payload)).not.toThrow();
  });

  it('rejects an Insert truncated at every possible cut point, naming the tag and offset', () => {
    const insert = FIXTURES.find((f) => f.name === 'Insert')!.payload;
    for (let cut = 0; cut < insert.length; cut++) {
      let caught: unknown;
      try {
        decode1(insert.subarray(0, cut));
      } catch (err) {
        caught = err;
      }
      expect(caught, `cut at ${cut}`).toBeInstanceOf(PgoutputDecodeError);
      expect((caught as PgoutputDecodeError).offset).toBeLessThanOrEqual(cut);
      if (cut > 0) expect((caught as Error).message).toMatch(/^pgoutput 'I' message: .* at offset \d+$/);
    }
  });

  it.each(FIXTURES)('rejects $name truncated at every cut point', ({ decoder, payload }) => {
    for (let cut = 0; cut < payload.length; cut++) {
      expect(() => decoder().decode(payload.subarray(0, cut)), `cut at ${cut}`).toThrow(PgoutputDecodeError);
    }
  });

  it.each(FIXTURES)('rejects $name with trailing garbage', ({ decoder, payload }) => {
    const long = Buffer.concat([payload, Buffer.from([0])]);
    expect(() => decoder().decode(long)).toThrow(new RegExp(`1 trailing bytes at offset ${payload.length}$`));
  });

  it.each([['Z'], ['P'], ['K'], ['\0']])('rejects unknown tag %j', (tag) => {
    expect(() => decode1(msg(tag).u32(1).build())).toThrow(/unknown message tag 0x[0-9a-f]+ at offset 0/);
  });

  it('rejects an empty payload', () => {
    expect(() => decode1(Buffer.alloc(0))).toThrow(PgoutputDecodeError);
  });

  it('accepts only protocol versions 1 and 2', () => {
    expect(() => new PgoutputDecoder(0)).toThrow(RangeError);
    expect(() => new PgoutputDecoder(3)).toThrow(RangeError);
    expect(() => new PgoutputDecoder(4)).toThrow(RangeError);
  });
});
