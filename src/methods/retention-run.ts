import { join } from 'node:path';
import { removeDurable } from '../storage/index.js';
import type { JobDefinition } from '../repository/job.js';
import { scanJob, type JobState } from '../repository/job-state.js';
import { planRetention, type PlanChain, type RetentionAction } from '../retention/plan.js';
import { mergeOldestIncrement, type MergeResult } from './merge.js';

export interface AppliedAction {
  readonly action: RetentionAction;
  readonly merge?: MergeResult;
}

export function planChains(state: JobState): PlanChain[] {
  return state.chains.map((c) => ({
    chainId: c.chainId,
    points: [c.full, ...c.increments].map((f) => ({ id: f.root.pointId, seq: f.root.seq, createdAt: new Date(f.root.createdAtMs).toISOString() })),
  }));
}

/**
 * Carries out the retention plan. Each action is crash-safe on its own:
 * a chain is deleted newest file first, so an interruption leaves a shorter
 * chain whose remaining points are all whole; a merge commits atomically.
 */
export async function applyRetention(job: JobDefinition, dir: string, initial: JobState): Promise<AppliedAction[]> {
  const plan = planRetention(planChains(initial), { method: job.method, retainPoints: job.retainPoints });
  const done: AppliedAction[] = [];
  let state = initial;
  for (const action of plan.actions) {
    const chain = state.chains.find((c) => c.chainId === action.chainId);
    if (!chain) continue;
    if (action.type === 'delete-chain') {
      for (const f of [...chain.increments].reverse()) await removeDurable(join(dir, f.name));
      await removeDurable(join(dir, chain.full.name));
      done.push({ action });
    } else {
      const merge = await mergeOldestIncrement(chain);
      done.push({ action, merge });
    }
    state = await scanJob(dir);
  }
  return done;
}
