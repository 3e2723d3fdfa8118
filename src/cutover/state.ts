/** The steps of a cutover, in order; `rollback` appears only when one before the switch failed. */
export const CUTOVER_STEPS = ['schema', 'lag', 'fence', 'drain', 'sequences', 'verify', 'recheck', 'switch', 'finish', 'rollback'] as const;
export type CutoverStepName = (typeof CUTOVER_STEPS)[number];

/** One step as `/status` shows it. */
export interface CutoverStep {
  name: CutoverStepName;
  startedAt: string;
  durationSeconds: number | null;
  outcome: 'running' | 'ok' | 'failed';
  /** One line: what the step found or did (or why it failed). */
  detail: string | null;
}

/**
 * The live state of the current (or last) cutover, shown under `cutover` in `/status`.
 * `writeBlockedSeconds` is fence to switch: how long the applications could not write.
 */
export interface CutoverState {
  state: 'running' | 'done' | 'rolled back' | 'failed';
  startedAt: string;
  finishedAt: string | null;
  steps: CutoverStep[];
  writeBlockedSeconds: number | null;
  /** Why the cutover rolled back (or failed), one line. */
  error: string | null;
}
