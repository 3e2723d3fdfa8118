import type { VerifyReport } from './verify.js';

/** The report for a human: one line per table, then the rows, sequences and schema objects that differ. */
export function formatReport(report: VerifyReport, opts: { strictSequences?: boolean } = {}): string {
  const out: string[] = [];
  for (const t of report.tables) {
    if (t.problem) out.push(`DIFFERS    ${t.table}: ${t.problem}`);
    else if (t.identical) out.push(`identical  ${t.table}: ${t.sourceRows} rows in ${t.chunks} chunk(s)`);
    else {
      out.push(`DIFFERS    ${t.table}: ${t.sourceRows} rows on the source, ${t.targetRows} on the target`);
      for (const r of t.rows) out.push(`             ${r.key}: ${r.kind}`);
      if (t.more) out.push(`             (more rows differ; only the first ${t.rows.length} are listed)`);
    }
  }
  for (const s of report.sequences) {
    if (s.identical) continue;
    const label = opts.strictSequences ? 'DIFFERS   ' : 'note      ';
    out.push(`${label} sequence ${s.sequence}: last_value ${s.source ?? 'unused'} on the source, ${s.target ?? 'unused'} on the target${opts.strictSequences ? '' : ' (sequences are synced at cutover; --strict-sequences makes this a difference)'}`);
  }
  for (const m of report.schema.missing) out.push(`DIFFERS    schema: ${m} is missing on the target`);
  for (const d of report.schema.differing) out.push(`DIFFERS    schema: ${d.replace(/^target: /, '')}`);
  const differing = report.tables.filter((t) => !t.identical).length;
  out.push(report.identical ? `identical: ${report.tables.length} table(s) match` : `NOT identical: ${differing} of ${report.tables.length} table(s) differ${report.schema.missing.length + report.schema.differing.length > 0 ? ', schema objects differ' : ''}`);
  return `${out.join('\n')}\n`;
}
