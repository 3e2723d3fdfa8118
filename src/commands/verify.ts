import { ConfigError } from '../errors.js';
import { formatReport } from '../verify/report.js';
import { verify } from '../verify/verify.js';
import { commandConnections } from './options.js';
import { negotiateSsl } from '../pg/connection.js';

/** `pgferry verify`: compares source and target; exit 0 identical, 1 with a report of what differs. */
export async function runVerifyCommand(
  flags: { source?: string; target?: string; tables?: string; json?: boolean; chunkRows?: string; slot?: string; strictSequences?: boolean },
  out: (text: string) => void,
  progress: (text: string) => void,
): Promise<number> {
  const { source, target, tables } = commandConnections(flags, { targetRequired: true });
  const chunkRows = flags.chunkRows === undefined ? 10_000 : /^\d+$/.test(flags.chunkRows) ? Number(flags.chunkRows) : NaN;
  if (!Number.isInteger(chunkRows) || chunkRows < 1) throw new ConfigError(`--chunk-rows: "${flags.chunkRows}" is not a positive whole number`);
  await negotiateSsl(source, target);
  const report = await verify({
    source,
    target: target!,
    tables,
    chunkRows,
    slot: flags.slot ?? process.env['PGFERRY_SLOT'] ?? 'pgferry',
    strictSequences: flags.strictSequences === true,
    onProgress: progress,
  });
  out(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report, { strictSequences: flags.strictSequences === true }));
  return report.identical ? 0 : 1;
}
