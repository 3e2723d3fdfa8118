/**
 * Splits a backend byte stream into messages, handing each CopyData ('d') body to `onCopyData`
 * and every other message, unchanged and in order, to `onOther`. On a replication connection
 * CopyData carries the whole WAL stream; reading it here, before any general-purpose parser,
 * saves a message object, a buffer view and two event emissions per change.
 *
 * Invariant: every byte pushed is delivered exactly once and in order, either as a CopyData body
 * or inside an `onOther` buffer of whole messages; a message split across pushes is delivered
 * once complete. Bodies may share memory with pushed buffers, which must not be reused.
 */
export class CopyDataSplitter {
  /** An incomplete message: its pieces and the total length it needs (0 while the header is incomplete). */
  private parts: Buffer[] = [];
  private have = 0;
  private need = 0;

  constructor(
    private readonly onCopyData: (body: Buffer) => void,
    private readonly onOther: (messages: Buffer) => void,
  ) {}

  push(chunk: Buffer): void {
    let buf = chunk;
    if (this.have > 0) {
      this.parts.push(chunk);
      this.have += chunk.length;
      if (this.need === 0 && this.have >= 5) this.need = 1 + readLength(Buffer.concat(this.parts, 5));
      if (this.need === 0 || this.have < this.need) return;
      buf = Buffer.concat(this.parts, this.have);
      this.parts = [];
      this.have = 0;
      this.need = 0;
    }
    let at = 0;
    let otherFrom = -1;
    while (buf.length - at >= 5) {
      const end = at + 1 + readLength(buf, at + 1);
      if (end > buf.length) break;
      if (buf[at] === 0x64) {
        if (otherFrom >= 0) this.onOther(buf.subarray(otherFrom, at));
        otherFrom = -1;
        this.onCopyData(buf.subarray(at + 5, end));
      } else if (otherFrom < 0) {
        otherFrom = at;
      }
      at = end;
    }
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
