import pino, { type Logger } from 'pino';
import { redact } from '../errors.js';

export type { Logger } from 'pino';

/**
 * The one root logger. JSON lines by default; readable when stdout is a terminal.
 * Every message, error and logged value passes through {@link redact}, so a URL with a password
 * never reaches a log, whichever field it is in.
 */
export function createLogger(level: string, opts: { pretty?: boolean; destination?: pino.DestinationStream } = {}): Logger {
  const pretty = opts.pretty ?? Boolean(process.stdout.isTTY);
  return pino(
    {
      level,
      base: undefined,
      redact: { paths: ['password', '*.password', 'config.password', 'source.password', 'target.password'], censor: '****' },
      formatters: { level: (label) => ({ level: label }), log: (obj) => redactDeep(obj) as Record<string, unknown> },
      serializers: {
        err: (err: unknown) => {
          const e = err as { message?: string; code?: string; stack?: string };
          return { message: redact(String(e?.message ?? err)), code: e?.code };
        },
      },
      hooks: {
        logMethod(args, method) {
          const redacted = args.map((a) => (typeof a === 'string' ? redact(a) : a)) as Parameters<typeof method>;
          method.apply(this, redacted);
        },
      },
    },
    opts.destination ?? (pretty ? pino.transport({ target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } }) : undefined),
  );
}

/** Redacts every string inside a logged object (bounded depth: log objects are small). */
function redactDeep(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redact(value);
  if (depth > 6 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, depth + 1));
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return value; // errors (serialized by err), dates, buffers
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = redactDeep(v, depth + 1);
  return out;
}
