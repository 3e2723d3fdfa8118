/**
 * Pure decoder for the `pgoutput` logical replication messages, protocol versions 1 and 2.
 * Input is the payload of one XLogData ('w') message; no I/O, no logging.
 *
 * @see https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
 */
import { isUtf8 } from 'node:buffer';
import type { Lsn } from './lsn.js';

/**
 * The 'u' tuple value: an unchanged TOASTed column whose value the server did not send.
 * It only means "keep what the target already has"; it is never a value in itself.
 */
export const UNCHANGED_TOAST: unique symbol = Symbol('pgoutput.unchangedToast');

/**
 * One column of TupleData: 't' → `string` (the server's text output, UTF-8 decoded and nothing
 * else), 'b' → `Buffer` (a copy, never a view of the payload), 'n' → `null`, 'u' → {@link UNCHANGED_TOAST}.
 */
export type TupleValue = string | Buffer | null | typeof UNCHANGED_TOAST;

/** A column of a Relation message, in attribute order (dropped and generated columns are not sent). */
export interface RelationColumn {
  name: string;
  typeOid: number;
  /** `atttypmod`, signed: -1 means "no modifier". */
  typeModifier: number;
  /** Flag bit 1: the column is part of the replica identity key. */
  isKey: boolean;
}

/** `pg_class.relreplident`: 'd' default (primary key), 'n' nothing, 'f' full, 'i' index. */
export type ReplicaIdentity = 'default' | 'nothing' | 'full' | 'index';

/**
 * One decoded message. `xid` on data messages is present exactly when the message arrived between
 * Stream Start and Stream Stop (protocol 2); `namespace` is '' for `pg_catalog`.
 * Tuples have one entry per column of the latest Relation message for `relationOid`.
 * `commitTime` is microseconds since 2000-01-01 UTC, as sent (signed, like `TimestampTz`).
 */
export type PgoutputMessage =
  | { tag: 'begin'; finalLsn: Lsn; commitTime: bigint; xid: number }
  | { tag: 'commit'; flags: number; commitLsn: Lsn; endLsn: Lsn; commitTime: bigint }
  | { tag: 'origin'; originLsn: Lsn; name: string }
  | {
      tag: 'relation';
      xid?: number;
      relationOid: number;
      namespace: string;
      name: string;
      replicaIdentity: ReplicaIdentity;
      columns: RelationColumn[];
    }
  | { tag: 'type'; xid?: number; typeOid: number; namespace: string; name: string }
  | { tag: 'insert'; xid?: number; relationOid: number; newTuple: TupleValue[] }
  | {
      tag: 'update';
      xid?: number;
      relationOid: number;
      /** 'key': old key columns only (others null); 'full': REPLICA IDENTITY FULL; null: key unchanged. */
      oldKind: 'key' | 'full' | null;
      oldTuple: TupleValue[] | null;
      newTuple: TupleValue[];
    }
  | { tag: 'delete'; xid?: number; relationOid: number; oldKind: 'key' | 'full'; oldTuple: TupleValue[] }
  | { tag: 'truncate'; xid?: number; cascade: boolean; restartIdentity: boolean; relationOids: number[] }
  | { tag: 'message'; xid?: number; transactional: boolean; lsn: Lsn; prefix: string; content: Buffer }
  | { tag: 'streamStart'; xid: number; firstSegment: boolean }
  | { tag: 'streamStop' }
  | { tag: 'streamCommit'; xid: number; flags: number; commitLsn: Lsn; endLsn: Lsn; commitTime: bigint }
  | { tag: 'streamAbort'; xid: number; subXid: number };

/** A payload that is not a well-formed pgoutput message; the message names the tag and byte offset. */
export class PgoutputDecodeError extends Error {
  override readonly name = 'PgoutputDecodeError';
  constructor(
    message: string,
    /** The message tag letter, or undefined when the payload was empty. */
    readonly tag: string | undefined,
    /** Byte offset in the payload where decoding failed. */
    readonly offset: number,
  ) {
    super(message);
  }
}

const enum Tag {
  Begin = 0x42, // B
  Commit = 0x43, // C
  Origin = 0x4f, // O
  Relation = 0x52, // R
  Type = 0x59, // Y
  Insert = 0x49, // I
  Update = 0x55, // U
  Delete = 0x44, // D
  Truncate = 0x54, // T
  Message = 0x4d, // M
  StreamStart = 0x53, // S
  StreamStop = 0x45, // E
  StreamCommit = 0x63, // c
  StreamAbort = 0x41, // A
}

const enum Marker {
  Null = 0x6e, // n
  UnchangedToast = 0x75, // u
  Text = 0x74, // t
  Binary = 0x62, // b
  Key = 0x4b, // K
  Old = 0x4f, // O
  New = 0x4e, // N
}

/** How a column value is named in a decode error. */
function columnWhat(i: number, kind: number): string {
  return `column ${i} ${kind === Marker.Text ? 'text' : 'binary'}`;
}

const REPLICA_IDENTITY: Readonly<Record<string, ReplicaIdentity>> = { d: 'default', n: 'nothing', f: 'full', i: 'index' };

/**
 * Buffer's own `utf8Slice` (what `toString('utf8', start, end)` ends in), called as a method:
 * `toString`'s argument checks and encoding lookup cost as much as the decoding itself for the
 * short values of a row, and so does calling it through `Function.prototype.call`. Bounds are
 * checked by the caller. Same replacement characters for invalid UTF-8 either way.
 */
type Utf8Sliceable = Buffer & { utf8Slice(start: number, end: number): string };
const hasUtf8Slice = typeof (Buffer.prototype as Partial<Utf8Sliceable>).utf8Slice === 'function';
type Latin1Sliceable = Buffer & { latin1Slice(start: number, end: number): string };
const hasLatin1Slice = typeof (Buffer.prototype as Partial<Latin1Sliceable>).latin1Slice === 'function';

/**
 * A tuple up to this size is read as one latin1 string, and its ASCII values are taken from it as
 * substrings (no call into the runtime per value); larger ones are decoded value by value. Small,
 * because a substring of 13 characters or more keeps that whole string alive (a V8 sliced string):
 * a key held for a group's length (Lanes, the runs) holds at most this much with it.
 */
const ONE_READ_TUPLE_BYTES = 4_096;

/**
 * Bounds-checked big-endian reader over one payload, which runs from `base` to `limit` of `buf`
 * (nothing past it is read); every read names what it reads for the error. Positions are offsets
 * in `buf`; errors report them from the payload's start.
 */
class Reader {
  private pos: number;

  constructor(
    private readonly buf: Buffer,
    private readonly base: number,
    private readonly limit: number,
  ) {
    this.pos = base + 1;
  }

  get offset(): number {
    return this.pos;
  }

  /** Where the payload (its tag byte) starts. */
  get origin(): number {
    return this.base;
  }

  fail(what: string, at = this.pos): never {
    const tag = String.fromCharCode(this.buf[this.base] ?? 0);
    throw new PgoutputDecodeError(`pgoutput '${tag}' message: ${what} at offset ${at - this.base}`, tag, at - this.base);
  }

  private take(n: number, what: string): number {
    const at = this.pos;
    if (this.limit - at < n) this.fail(`truncated ${what} (need ${n} bytes, have ${this.limit - at})`);
    this.pos += n;
    return at;
  }

  u8(what: string): number {
    return this.buf.readUInt8(this.take(1, what));
  }
  u16(what: string): number {
    return this.buf.readUInt16BE(this.take(2, what));
  }
  u32(what: string): number {
    return this.buf.readUInt32BE(this.take(4, what));
  }
  i32(what: string): number {
    return this.buf.readInt32BE(this.take(4, what));
  }
  u64(what: string): bigint {
    return this.buf.readBigUInt64BE(this.take(8, what));
  }
  i64(what: string): bigint {
    return this.buf.readBigInt64BE(this.take(8, what));
  }

  /** A NUL-terminated UTF-8 String. */
  cstring(what: string): string {
    const length = this.buf.subarray(this.pos, this.limit).indexOf(0);
    if (length < 0) this.fail(`unterminated ${what}`);
    const s = this.utf8(this.pos, this.pos + length, what);
    this.pos += length + 1;
    return s;
  }

  /**
   * Bytes `start` to `end` as text. Bytes that are not UTF-8 fail here rather than turning into
   * U+FFFD, which the target would store: a value is passed on exactly or not at all. (A source
   * server refuses to send them on a UTF8 connection, from a `SQL_ASCII` database too; this keeps
   * the guarantee whatever arrives.) Checked only when a U+FFFD came out: text may hold a real one.
   * `what` names the bytes in the error; a number is a tuple's column (its name is built only then).
   */
  utf8(start: number, end: number, what: string | number): string {
    const s = hasUtf8Slice ? (this.buf as Utf8Sliceable).utf8Slice(start, end) : this.buf.toString('utf8', start, end);
    if (s.includes('\uFFFD') && !isUtf8(this.buf.subarray(start, end))) {
      this.fail(`${typeof what === 'number' ? `column ${what} text` : what} is not valid UTF-8 (error 22021: a SQL_ASCII source database? fix the value on the source)`, start);
    }
    return s;
  }

  /** An Int32 length followed by that many bytes; returns their [start, end) offsets. */
  counted(what: string): [start: number, end: number] {
    const at = this.pos;
    const n = this.i32(`${what} length`);
    if (n < 0) this.fail(`negative ${what} length ${n}`, at);
    const start = this.take(n, what);
    return [start, start + n];
  }

  bytes(start: number, end: number): Buffer {
    return Buffer.from(this.buf.subarray(start, end));
  }


  /**
   * A TupleData: per column a kind byte, then for text and binary an Int32 length and the bytes.
   * The hot path of decoding, so error texts are built only on failure. A text value of ASCII
   * bytes only (most are) is a substring of the tuple read once as latin1, where each byte is
   * one character: for ASCII that is exactly its UTF-8 decoding. Any other is decoded and checked
   * as UTF-8 on its own.
   */
  tuple(): TupleValue[] {
    const n = this.u16('column count');
    const buf = this.buf;
    const limit = this.limit;
    const values: TupleValue[] = new Array<TupleValue>(n);
    const from = this.pos;
    const oneRead = hasLatin1Slice && limit - from <= ONE_READ_TUPLE_BYTES;
    let latin1: string | null = null;
    for (let i = 0; i < n; i++) {
      const at = this.pos;
      if (at >= limit) this.fail(`truncated column ${i} kind (need 1 bytes, have 0)`);
      const kind = buf[at]!;
      this.pos = at + 1;
      if (kind === Marker.Text || kind === Marker.Binary) {
        const lengthAt = this.pos;
        if (limit - lengthAt < 4) this.fail(`truncated ${columnWhat(i, kind)} length (need 4 bytes, have ${limit - lengthAt})`);
        const length = buf.readInt32BE(lengthAt);
        if (length < 0) this.fail(`negative ${columnWhat(i, kind)} length ${length}`, lengthAt);
        const start = lengthAt + 4;
        this.pos = start;
        if (limit - start < length) this.fail(`truncated ${columnWhat(i, kind)} (need ${length} bytes, have ${limit - start})`);
        this.pos = start + length;
        if (kind === Marker.Binary) values[i] = Buffer.from(buf.subarray(start, start + length));
        else {
          let ascii = oneRead;
          for (let k = start, end = start + length; ascii && k < end; k++) if (buf[k]! > 0x7f) ascii = false;
          if (ascii) {
            latin1 ??= (buf as Latin1Sliceable).latin1Slice(from, limit);
            values[i] = latin1.substring(start - from, start - from + length);
          } else values[i] = this.utf8(start, start + length, i);
        }
      } else if (kind === Marker.Null) values[i] = null;
      else if (kind === Marker.UnchangedToast) values[i] = UNCHANGED_TOAST;
      else this.fail(`unknown column ${i} kind 0x${kind.toString(16)}`, at);
    }
    return values;
  }

  end(): void {
    if (this.pos !== this.limit) this.fail(`${this.limit - this.pos} trailing bytes`);
  }
}

/**
 * Decodes one pgoutput message per call. Stateful because in protocol 2 data messages carry an
 * xid only between Stream Start and Stream Stop. Invariants: a payload is consumed exactly or
 * rejected; a rejected payload leaves the stream state unchanged; Stream Start/Stop must pair up,
 * and Begin, Commit, Stream Start, Stream Commit and Stream Abort never occur inside a stream block.
 */
export class PgoutputDecoder {
  private streaming = false;

  /** @throws RangeError unless `protoVersion` is 1 or 2 (the versions this decoder implements). */
  constructor(private readonly protoVersion: number) {
    if (protoVersion !== 1 && protoVersion !== 2) {
      throw new RangeError(`unsupported pgoutput proto_version ${protoVersion} (supported: 1, 2)`);
    }
  }

  /**
   * Decodes the payload from `start` to `end` of `buf` (offsets rather than a view: one buffer
   * object less per message on the hot path).
   * @throws PgoutputDecodeError on an empty, truncated, overlong or unknown message.
   */
  decode(buf: Buffer, start = 0, end = buf.length): PgoutputMessage {
    if (end <= start) throw new PgoutputDecodeError('pgoutput: empty message at offset 0', undefined, 0);
    const r = new Reader(buf, start, end);
    const msg = this.body(r, buf[start] ?? 0);
    r.end();
    if (msg.tag === 'streamStart') this.streaming = true;
    else if (msg.tag === 'streamStop') this.streaming = false;
    return msg;
  }

  /** Data messages carry the xid only inside a stream block. */
  private xid(r: Reader): { xid?: number } {
    return this.streaming ? { xid: r.u32('xid') } : {};
  }

  private body(r: Reader, tag: number): PgoutputMessage {
    const streamTag = tag === Tag.StreamStart || tag === Tag.StreamStop || tag === Tag.StreamCommit || tag === Tag.StreamAbort;
    if (streamTag && this.protoVersion < 2) r.fail('streaming message in protocol version 1', r.origin);
    if (tag === Tag.StreamStop && !this.streaming) r.fail('Stream Stop without Stream Start', r.origin);
    if (this.streaming && isTransactionControl(tag)) r.fail('not allowed inside a stream block', r.origin);

    switch (tag) {
      case Tag.Begin:
        return { tag: 'begin', finalLsn: r.u64('final LSN'), commitTime: r.i64('commit time'), xid: r.u32('xid') };
      case Tag.Commit:
        return {
          tag: 'commit',
          flags: r.u8('flags'),
          commitLsn: r.u64('commit LSN'),
          endLsn: r.u64('end LSN'),
          commitTime: r.i64('commit time'),
        };
      case Tag.Origin:
        return { tag: 'origin', originLsn: r.u64('origin LSN'), name: r.cstring('origin name') };
      case Tag.Relation: {
        const head = { tag: 'relation' as const, ...this.xid(r), relationOid: r.u32('relation OID') };
        const namespace = r.cstring('namespace');
        const name = r.cstring('relation name');
        const identByte = r.u8('replica identity');
        const replicaIdentity = REPLICA_IDENTITY[String.fromCharCode(identByte)];
        if (replicaIdentity === undefined) r.fail(`unknown replica identity 0x${identByte.toString(16)}`, r.offset - 1);
        const n = r.u16('column count');
        const columns: RelationColumn[] = [];
        for (let i = 0; i < n; i++) {
          const flags = r.u8(`column ${i} flags`);
          columns.push({
            name: r.cstring(`column ${i} name`),
            typeOid: r.u32(`column ${i} type OID`),
            typeModifier: r.i32(`column ${i} type modifier`),
            isKey: (flags & 1) !== 0,
          });
        }
        return { ...head, namespace, name, replicaIdentity, columns };
      }
      case Tag.Type:
        return {
          tag: 'type',
          ...this.xid(r),
          typeOid: r.u32('type OID'),
          namespace: r.cstring('namespace'),
          name: r.cstring('type name'),
        };
      // Row changes are the hot path: plain object literals, no spreads or closures.
      case Tag.Insert: {
        const txid = this.streaming ? r.u32('xid') : undefined;
        const relationOid = r.u32('relation OID');
        if (r.u8('new tuple marker') !== Marker.New) r.fail("expected new tuple marker 'N'", r.offset - 1);
        const newTuple = r.tuple();
        return txid === undefined ? { tag: 'insert', relationOid, newTuple } : { tag: 'insert', xid: txid, relationOid, newTuple };
      }
      case Tag.Update: {
        const txid = this.streaming ? r.u32('xid') : undefined;
        const relationOid = r.u32('relation OID');
        let marker = r.u8('tuple marker');
        const oldKind = oldTupleKind(marker) ?? null;
        const oldTuple = oldKind === null ? null : r.tuple();
        if (oldKind !== null) marker = r.u8('new tuple marker');
        if (marker !== Marker.New) r.fail(`expected tuple marker ${oldKind === null ? "'K', 'O' or " : ''}'N'`, r.offset - 1);
        const newTuple = r.tuple();
        return txid === undefined ? { tag: 'update', relationOid, oldKind, oldTuple, newTuple } : { tag: 'update', xid: txid, relationOid, oldKind, oldTuple, newTuple };
      }
      case Tag.Delete: {
        const txid = this.streaming ? r.u32('xid') : undefined;
        const relationOid = r.u32('relation OID');
        const oldKind = oldTupleKind(r.u8('old tuple marker'));
        if (oldKind === undefined) r.fail("expected old tuple marker 'K' or 'O'", r.offset - 1);
        const oldTuple = r.tuple();
        return txid === undefined ? { tag: 'delete', relationOid, oldKind, oldTuple } : { tag: 'delete', xid: txid, relationOid, oldKind, oldTuple };
      }
      case Tag.Truncate: {
        const head = { tag: 'truncate' as const, ...this.xid(r) };
        const n = r.u32('relation count');
        const options = r.u8('options');
        const relationOids: number[] = [];
        for (let i = 0; i < n; i++) relationOids.push(r.u32(`relation ${i} OID`));
        return { ...head, cascade: (options & 1) !== 0, restartIdentity: (options & 2) !== 0, relationOids };
      }
      case Tag.Message: {
        const head = { tag: 'message' as const, ...this.xid(r), transactional: (r.u8('flags') & 1) !== 0 };
        const lsn = r.u64('LSN');
        const prefix = r.cstring('prefix');
        return { ...head, lsn, prefix, content: r.bytes(...r.counted('content')) };
      }
      case Tag.StreamStart:
        return { tag: 'streamStart', xid: r.u32('xid'), firstSegment: r.u8('first segment flag') !== 0 };
      case Tag.StreamStop:
        return { tag: 'streamStop' };
      case Tag.StreamCommit:
        return {
          tag: 'streamCommit',
          xid: r.u32('xid'),
          flags: r.u8('flags'),
          commitLsn: r.u64('commit LSN'),
          endLsn: r.u64('end LSN'),
          commitTime: r.i64('commit time'),
        };
      case Tag.StreamAbort:
        return { tag: 'streamAbort', xid: r.u32('xid'), subXid: r.u32('subtransaction xid') };
      default:
        return r.fail(`unknown message tag 0x${tag.toString(16)}`, r.origin);
    }
  }
}

/** The old-tuple marker of Update/Delete: 'K' key columns only, 'O' the whole old row. */
function oldTupleKind(marker: number): 'key' | 'full' | undefined {
  return marker === Marker.Key ? 'key' : marker === Marker.Old ? 'full' : undefined;
}

/** Messages that open or close a transaction or a stream block; none may appear inside a block. */
function isTransactionControl(tag: number): boolean {
  return (
    tag === Tag.Begin ||
    tag === Tag.Commit ||
    tag === Tag.StreamStart ||
    tag === Tag.StreamCommit ||
    tag === Tag.StreamAbort
  );
}
