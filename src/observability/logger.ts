import pino, { type Logger } from 'pino';
import { redact } from '../errors.js';

export type { Logger } from 'pino';

/**
 * The one root logger. JSON lines by default; readable when stdout is a terminal.
 * Every message and error passes through {@link redact}, so a URL with a password never reaches a log.
 */
export function createLogger(level: string, opts: { pretty?: boolean; destination?: pino.DestinationStream } = {}): Logger {
  const pretty = opts.pretty ?? Boolean(process.stdout.isTTY);
  return pino(
    {
      level,
      base: undefined,
      redact: { paths: ['password', '*.password', 'config.password', 'source.password', 'target.password'], censor: '****' },
      formatters: { level: (label) => ({ level: label }) },
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
