import type { Lsn } from './lsn.js';

/** Milliseconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01 00:00:00 UTC. */
export const PG_EPOCH_MS = 946_684_800_000n;

/**
 * Encodes a Standby Status Update ('r') for the CopyBoth stream.
 * Positions are "last byte + 1": to confirm a transaction, pass its commit *end* LSN unchanged.
 * https://www.postgresql.org/docs/current/protocol-replication.html#PROTOCOL-REPLICATION-STANDBY-STATUS-UPDATE
 */
export function encodeStandbyStatus(p: { write: Lsn; flush: Lsn; apply: Lsn; nowMs: number; replyRequested?: boolean }): Buffer {
  const buf = Buffer.alloc(34);
  buf.write('r', 0, 'latin1');
  buf.writeBigUInt64BE(p.write, 1);
  buf.writeBigUInt64BE(p.flush, 9);
  buf.writeBigUInt64BE(p.apply, 17);
  buf.writeBigInt64BE((BigInt(Math.floor(p.nowMs)) - PG_EPOCH_MS) * 1000n, 25);
  buf.writeUInt8(p.replyRequested ? 1 : 0, 33);
  return buf;
}

/** A Primary Keepalive ('k') message, decoded. `sendTime` is microseconds since 2000-01-01 UTC. */
export interface Keepalive {
  walEnd: Lsn;
  sendTime: bigint;
  replyRequested: boolean;
}

/** Decodes a Primary Keepalive message ('k', 18 bytes). */
export function decodeKeepalive(buf: Buffer): Keepalive {
  if (buf.length !== 18 || buf[0] !== 0x6b) throw new TypeError('not a primary keepalive message');
  return { walEnd: buf.readBigUInt64BE(1), sendTime: buf.readBigInt64BE(9), replyRequested: buf[17] === 1 };
}

/** The header of an XLogData ('w') message; the pgoutput payload starts at byte 25. */
export function decodeXLogDataHeader(buf: Buffer): { walStart: Lsn; walEnd: Lsn; sendTime: bigint } {
  if (buf.length < 25 || buf[0] !== 0x77) throw new TypeError('not an XLogData message');
  return { walStart: buf.readBigUInt64BE(1), walEnd: buf.readBigUInt64BE(9), sendTime: buf.readBigInt64BE(17) };
}
