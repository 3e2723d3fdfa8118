/** How the cutover runs: thresholds, step timeouts, verification depth, traffic switch. */
export interface CutoverSettings {
  /** Step 1 passes once lag is under both. */
  maxLagSeconds: number;
  maxLagBytes: number;
  /** Per-step timeouts, in milliseconds. */
  lagTimeoutMs: number;
  fenceTimeoutMs: number;
  drainTimeoutMs: number;
  verifyTimeoutMs: number;
  switchTimeoutMs: number;
  /** `full`: chunked hashes of every row; `counts`: row counts; `none`: skipped. */
  verify: 'full' | 'counts' | 'none';
  /** Drop the slot and publication once done (default: keep them; `pgferry cleanup` drops them later). */
  dropSlot: boolean;
  /** PgBouncer admin console URL (user in `admin_users`, database `pgbouncer`); null: no PgBouncer. */
  pgbouncerAdmin: string | null;
  /** PgBouncer's ini file whose `[databases]` entry is rewritten to the target. */
  pgbouncerConfig: string | null;
  /** The `[databases]` entry the applications use. */
  pgbouncerDatabase: string | null;
  /** Shell command run at the switch with PGFERRY_TARGET_* in its environment. */
  hook: string | null;
  /** URL POSTed at the switch with the target's connection details as JSON. */
  webhook: string | null;
}

/** The raw keys (config file keys; env `PGFERRY_` + upper snake case) this module reads. */
export const CUTOVER_KEYS = [
  ['cutoverMaxLagSeconds', 'PGFERRY_CUTOVER_MAX_LAG_SECONDS'],
  ['cutoverMaxLagBytes', 'PGFERRY_CUTOVER_MAX_LAG_BYTES'],
  ['cutoverLagTimeout', 'PGFERRY_CUTOVER_LAG_TIMEOUT'],
  ['cutoverFenceTimeout', 'PGFERRY_CUTOVER_FENCE_TIMEOUT'],
  ['cutoverDrainTimeout', 'PGFERRY_CUTOVER_DRAIN_TIMEOUT'],
  ['cutoverVerifyTimeout', 'PGFERRY_CUTOVER_VERIFY_TIMEOUT'],
  ['cutoverSwitchTimeout', 'PGFERRY_CUTOVER_SWITCH_TIMEOUT'],
  ['cutoverVerify', 'PGFERRY_CUTOVER_VERIFY'],
  ['cutoverDropSlot', 'PGFERRY_CUTOVER_DROP_SLOT'],
  ['pgbouncerAdmin', 'PGFERRY_PGBOUNCER_ADMIN'],
  ['pgbouncerConfig', 'PGFERRY_PGBOUNCER_CONFIG'],
  ['pgbouncerDatabase', 'PGFERRY_PGBOUNCER_DATABASE'],
  ['cutoverHook', 'PGFERRY_CUTOVER_HOOK'],
  ['cutoverWebhook', 'PGFERRY_CUTOVER_WEBHOOK'],
] as const;

export type CutoverKey = (typeof CUTOVER_KEYS)[number][0];

/**
 * Validates the cutover settings from their merged raw values; `where(key)` names where a value
 * came from. Appends one line per problem to `problems`.
 */
export function parseCutoverSettings(raw: Partial<Record<CutoverKey, unknown>>, where: (key: CutoverKey) => string, problems: string[], parseSize: (text: string) => number | null): CutoverSettings {
  const text = (key: CutoverKey): string | null => {
    const v = raw[key];
    if (v === undefined || v === null || String(v).trim() === '') return null;
    return String(v).trim();
  };
  const seconds = (key: CutoverKey, dflt: number): number => {
    const v = text(key);
    if (v === null) return dflt * 1000;
    const n = Number(v);
    if (!/^\d+(\.\d+)?$/.test(v) || !(n > 0)) {
      problems.push(`${where(key)}: "${v}" is not a positive number of seconds`);
      return dflt * 1000;
    }
    return n * 1000;
  };
  const maxLagSecondsText = text('cutoverMaxLagSeconds');
  const maxLagSeconds = maxLagSecondsText === null ? 5 : Number(maxLagSecondsText);
  if (!Number.isFinite(maxLagSeconds) || maxLagSeconds < 0) problems.push(`${where('cutoverMaxLagSeconds')}: "${maxLagSecondsText}" is not a number of seconds`);
  const lagBytesText = text('cutoverMaxLagBytes') ?? '16MB';
  const maxLagBytes = parseSize(lagBytesText);
  if (maxLagBytes === null) problems.push(`${where('cutoverMaxLagBytes')}: "${lagBytesText}" is not a size (e.g. 16MB)`);
  const verify = (text('cutoverVerify') ?? 'full').toLowerCase();
  if (!['full', 'counts', 'none'].includes(verify)) problems.push(`${where('cutoverVerify')}: "${verify}" is not one of full, counts, none`);
  const dropText = (text('cutoverDropSlot') ?? 'false').toLowerCase();
  const dropSlot = ['true', 'on', 'yes', '1'].includes(dropText);
  if (!dropSlot && !['false', 'off', 'no', '0'].includes(dropText)) problems.push(`${where('cutoverDropSlot')}: "${dropText}" is not true or false`);
  const pgbouncer = { admin: text('pgbouncerAdmin'), config: text('pgbouncerConfig'), database: text('pgbouncerDatabase') };
  const given = Object.values(pgbouncer).filter((v) => v !== null).length;
  if (given > 0 && given < 3) {
    problems.push(`${where('pgbouncerAdmin')}, ${where('pgbouncerConfig')}, ${where('pgbouncerDatabase')}: PgBouncer needs all three (admin console URL, ini file, database entry name), or none`);
  }
  const webhook = text('cutoverWebhook');
  if (webhook !== null && !/^https?:\/\//.test(webhook)) problems.push(`${where('cutoverWebhook')}: "${webhook}" is not an http:// or https:// URL`);
  return {
    maxLagSeconds: Number.isFinite(maxLagSeconds) ? maxLagSeconds : 5,
    maxLagBytes: maxLagBytes ?? 0,
    lagTimeoutMs: seconds('cutoverLagTimeout', 60),
    fenceTimeoutMs: seconds('cutoverFenceTimeout', 15),
    drainTimeoutMs: seconds('cutoverDrainTimeout', 30),
    verifyTimeoutMs: seconds('cutoverVerifyTimeout', 300),
    switchTimeoutMs: seconds('cutoverSwitchTimeout', 30),
    verify: verify as CutoverSettings['verify'],
    dropSlot,
    pgbouncerAdmin: pgbouncer.admin,
    pgbouncerConfig: pgbouncer.config,
    pgbouncerDatabase: pgbouncer.database,
    hook: text('cutoverHook'),
    webhook,
  };
}
