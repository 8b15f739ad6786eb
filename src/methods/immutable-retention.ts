import { blockedUntil, immutableDaysOf, readImmutableRecord } from '../repository/immutability.js';
import type { Chain, JobState } from '../repository/job-state.js';
import type { Repository } from '../repository/repository.js';
import type { RetentionAction, RetentionPlan } from '../retention/plan.js';

/** The backup files a retention action deletes (a merge rewrites the full and deletes the increment). */
export function filesDeletedBy(action: RetentionAction, chain: Chain): string[] {
  if (action.type === 'delete-chain') return [...chain.rollbacks, chain.full, ...chain.increments].map((f) => f.name);
  if (action.type === 'delete-increments') return chain.increments.filter((f) => action.pointIds.includes(f.root.pointId)).map((f) => f.name);
  if (action.type === 'delete-rollback') return chain.rollbacks.filter((f) => f.root.pointId === action.pointId).map((f) => f.name);
  return [chain.full.name, ...chain.increments.slice(0, 1).map((f) => f.name)];
}

/** Why an action must wait on an immutable repository ("immutable until …"), or undefined when its files may go. */
export function immutableObstacle(
  action: RetentionAction,
  chain: Chain,
  record: ReadonlyMap<string, Date>,
  now: Date,
  immutableDays?: number,
): string | undefined {
  const until = blockedUntil(record, filesDeletedBy(action, chain), now, immutableDays);
  return until === undefined ? undefined : `immutable until ${until.toISOString()}`;
}

function pointsOf(action: RetentionAction): readonly string[] {
  return action.type === 'delete-chain' || action.type === 'delete-increments'
    ? action.pointIds
    : action.type === 'merge'
      ? [action.incrementPointId]
      : [action.pointId];
}

/**
 * `retention plan` on an immutable repository: an action whose files are
 * still immutable is not done now; its points are listed as kept, saying
 * until when and what retention will do then.
 */
export async function immutableRetentionPlan(repo: Repository, state: JobState, plan: RetentionPlan, now: Date): Promise<RetentionPlan> {
  const days = immutableDaysOf(repo);
  if (days === undefined) return plan;
  const record = await readImmutableRecord(state.dir, state.storage);
  const actions: RetentionAction[] = [];
  const kept = [...plan.kept];
  const waiting = new Set<string>();
  for (const a of plan.actions) {
    const chain = state.chains.find((c) => c.chainId === a.chainId);
    const obstacle =
      chain === undefined ? undefined : waiting.has(a.chainId) ? 'an earlier action of this chain waits' : immutableObstacle(a, chain, record, now, days);
    if (obstacle === undefined) {
      actions.push(a);
      continue;
    }
    waiting.add(a.chainId);
    for (const id of pointsOf(a)) kept.push({ id, reason: `${obstacle} (then: ${a.reason})` });
  }
  return { actions, kept };
}
