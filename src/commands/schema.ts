import { connectClient, describeServer, negotiateSsl } from '../pg/connection.js';
import { applySchemaObjects, assertNoConflicts, planSchemaCopy } from '../schema/copy-schema.js';
import { renderPlan } from '../schema/plan.js';
import { commandConnections } from './options.js';

/**
 * `pgferry schema`: prints the DDL that schema copy would run (without --target: all of it; with
 * --target --dry-run: what the target lacks), or applies it to --target. Returns the exit code.
 */
export async function runSchemaCommand(flags: { source?: string; target?: string; tables?: string; dryRun?: boolean }, out: (text: string) => void): Promise<number> {
  const { source, target, tables } = commandConnections(flags, { targetRequired: false });
  await negotiateSsl(source, target);
  const src = await connectClient(source, 'source');
  const tgt = target ? await connectClient(target, 'target').catch(async (err: unknown) => { await src.end().catch(() => {}); throw err; }) : null;
  try {
    const plan = await planSchemaCopy(src, tgt, tables);
    const apply = tgt !== null && !flags.dryRun;
    const header = [
      `pgferry schema: source ${describeServer(source)}${target ? `, target ${describeServer(target)}` : ' (full script, no target compared)'}`,
      ...(tgt ? [`${plan.unchanged} object(s) already on the target and matching are left out`] : []),
      apply ? 'applying to the target:' : 'dry run: nothing is applied',
    ];
    out(renderPlan(plan, header));
    if (!apply) return plan.conflicts.length > 0 ? 1 : 0;
    assertNoConflicts(plan);
    await applySchemaObjects(tgt, 'pre-data', plan.preData);
    await applySchemaObjects(tgt, 'post-data', plan.postData, { connect: () => connectClient(target!, 'target') });
    out(`-- applied: ${plan.preData.length} pre-data and ${plan.postData.length} post-data object(s)\n`);
    return 0;
  } finally {
    await src.end().catch(() => {});
    await tgt?.end().catch(() => {});
  }
}
