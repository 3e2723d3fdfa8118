/**
 * Splits a backend byte stream into messages, handing CopyData ('d') to `onCopyData` and every
 * other message, unchanged and in order, to `onOther`. On a replication connection CopyData
 * carries the whole WAL stream; reading it here, before any general-purpose parser, saves a
 * message object, a buffer view and two event emissions per change. With `frames`, each run of
 * consecutive CopyData messages is handed over whole, headers included, with its message count:
 * ready to be written unchanged to a connection in COPY FROM STDIN (the framing is the same).
 *
 * Invariant: every byte pushed is delivered exactly once and in order, either in `onCopyData`
 * (a body, or a run of whole messages) or inside an `onOther` buffer of whole messages; a message
 * split across pushes is delivered once complete. Delivered buffers may share memory with pushed
 * ones, which must not be reused.
 */
export class CopyDataSplitter {
  /** An incomplete message: its pieces and the total length it needs (0 while the header is incomplete). */
  private parts: Buffer[] = [];
  private have = 0;
  private need = 0;

  constructor(
    /** Bytes `start` to `end` of `buf` (offsets rather than a view: one object less per message). */
    private readonly onCopyData: (buf: Buffer, start: number, end: number, messages: number) => void,
    private readonly onOther: (messages: Buffer) => void,
    private readonly frames = false,
  ) {}

  /** The bytes of an incomplete message held back so far (handed over when switching parsers). */
  takeRest(): Buffer | null {
    if (this.have === 0) return null;
    const rest = Buffer.concat(this.parts, this.have);
    this.parts = [];
    this.have = 0;
    this.need = 0;
    return rest;
  }

  push(chunk: Buffer): void {
    let rest = chunk;
    if (this.have > 0) {
      // Complete the held message with only the bytes it lacks; the rest of the chunk is read in
      // place (concatenating whole chunks would copy nearly every byte: most end mid-message).
      const take = (bytes: number): void => {
        const n = Math.min(bytes, rest.length);
        this.parts.push(rest.subarray(0, n));
        this.have += n;
        rest = rest.subarray(n);
      };
      if (this.need === 0) {
        take(5 - this.have);
        if (this.have < 5) return;
        this.need = 1 + readLength(Buffer.concat(this.parts, 5));
      }
      take(this.need - this.have);
      if (this.have < this.need) return;
      const message = Buffer.concat(this.parts, this.have);
      this.parts = [];
      this.have = 0;
      this.need = 0;
      this.scan(message);
    }
    this.scan(rest);
  }

  /** Delivers the whole messages in `buf` and holds back an incomplete one at its end. */
  private scan(buf: Buffer): void {
    let at = 0;
    let otherFrom = -1;
    let runFrom = -1;
    let run = 0;
    while (buf.length - at >= 5) {
      const end = at + 1 + readLength(buf, at + 1);
      if (end > buf.length) break;
      if (buf[at] === 0x64) {
        if (otherFrom >= 0) this.onOther(buf.subarray(otherFrom, at));
        otherFrom = -1;
        if (!this.frames) this.onCopyData(buf, at + 5, end, 1);
        else if (run++ === 0) runFrom = at;
      } else {
        if (run > 0) this.onCopyData(buf, runFrom, at, run);
        run = 0;
        if (otherFrom < 0) otherFrom = at;
      }
      at = end;
    }
    if (run > 0) this.onCopyData(buf, runFrom, at, run);
    if (otherFrom >= 0) this.onOther(buf.subarray(otherFrom, at));
    if (at < buf.length) {
      const rest = buf.subarray(at);
      this.parts = [rest];
      this.have = rest.length;
      this.need = rest.length >= 5 ? 1 + readLength(rest, 1) : 0;
    }
  }
}

function readLength(buf: Buffer, at = 1): number {
  const n = buf.readInt32BE(at);
  if (n < 4) throw new RangeError(`invalid message length ${n}`);
  return n;
}
