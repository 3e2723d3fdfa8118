/**
 * Log sequence numbers. Inside pgferry an LSN is always a `bigint` (a byte position in the WAL);
 * the `X/X` text form exists only at the edges (logs, HTTP, SQL parameters).
 */
export type Lsn = bigint;

/** The zero LSN, `0/0`: "no position". */
export const LSN_ZERO: Lsn = 0n;

const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** Parses PostgreSQL's `X/X` form. Throws on anything else: an LSN is never guessed. */
export function parseLsn(text: string): Lsn {
  const m = LSN_TEXT.exec(text.trim());
  if (!m) throw new TypeError(`not an LSN: ${JSON.stringify(text)}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** Formats an LSN the way PostgreSQL prints `pg_lsn` (upper-case hex, no padding). */
export function formatLsn(lsn: Lsn): string {
  if (lsn < 0n || lsn > 0xffffffffffffffffn) throw new RangeError(`LSN out of range: ${lsn}`);
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** The larger of two LSNs. */
export function maxLsn(a: Lsn, b: Lsn): Lsn {
  return a > b ? a : b;
}
