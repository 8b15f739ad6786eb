import { join } from 'node:path';
import { removeDurable, type Storage } from '../storage/index.js';
import { retentionPolicy, type JobDefinition } from '../repository/job.js';
import { scanJob, type Chain, type JobState } from '../repository/job-state.js';
import { heldPoints, withHoldsLock } from '../repository/holds.js';
import { filePlaces } from '../repository/tiered-storage.js';
import { gfsFullDue, planRetention, type PlanChain, type RetentionAction } from '../retention/plan.js';
import { mergeOldestIncrement, type MergeResult } from './merge.js';
import type { BlockWorkerPool } from '../compress/index.js';
import { forgetDeleted, readImmutableRecord } from '../repository/immutability.js';
import { unlockForDelete } from '../storage/immutable-flag.js';
import { filesDeletedBy, immutableObstacle } from './immutable-retention.js';

export interface AppliedAction {
  readonly action: RetentionAction;
  readonly merge?: MergeResult;
  /** Why the action was not carried out (the point is held). */
  readonly skipped?: string;
}

/** `moved`: the names of the job's fulls on the capacity tier (movedFiles), whose chains retention may not merge. */
export function planChains(state: JobState, moved?: ReadonlySet<string>): PlanChain[] {
  return state.chains.map((c) => ({
    chainId: c.chainId,
    points: [...[...c.rollbacks].reverse(), c.full, ...c.increments].map((f) => ({
      id: f.root.pointId,
      seq: f.root.seq,
      createdAt: new Date(f.root.createdAtMs).toISOString(),
      merged: f.root.mergedCount > 0,
    })),
    rollbacks: c.rollbacks.length,
    ...(moved?.has(c.full.name) === true ? { onCapacityTier: true } : {}),
  }));
}

/** The names of a job's fulls that live only on its repository's capacity tier (none without a tier): a chain moves whole. */
export async function movedFiles(state: JobState): Promise<Set<string>> {
  const names = state.chains.map((c) => c.full.name);
  const places = await filePlaces(state.storage, state.dir, names);
  return new Set(names.filter((n) => places?.get(n) === 'capacity'));
}

/**
 * Why this run's increment must become a synthetic full so that GFS has a
 * full to keep (see gfsFullDue), or undefined. Only for jobs with GFS and no
 * full day scheduled: a scheduled full already starts a chain every week.
 */
export function gfsSyntheticFullDue(job: JobDefinition, state: JobState, now: Date): string | undefined {
  if (!job.gfs || job.method === 'reverse' || job.activeFullDays.length > 0 || (job.syntheticFullDays?.length ?? 0) > 0) return undefined;
  return gfsFullDue(planChains(state), job.gfs, now.toISOString());
}

/** How long retention waits for a session that is writing its hold (a few file writes). */
const HOLDS_WAIT_MS = 60_000;

/**
 * Carries out the retention plan. Each action is crash-safe on its own:
 * a chain is deleted newest file first, so an interruption leaves a shorter
 * chain whose remaining points are all whole; a merge commits atomically.
 * Each action reads the holds and runs under the holds lock, so a session
 * that holds a point before or while retention runs is never left serving
 * deleted files. On an immutable repository (`immutableDays`), an action whose
 * files' dates have not come is skipped ("immutable until …"); otherwise
 * each file is unlocked just before it is deleted, and a file a crash left
 * unlocked is deleted by the next run (its date has come).
 */
export async function applyRetention(
  job: JobDefinition,
  dir: string,
  initial: JobState,
  now: Date,
  opts: {
    immutableDays?: number | undefined;
    /** Workers for a merge's hashing and compression (the run's own): without it a merge starts a pool of its own. */
    pool?: BlockWorkerPool | undefined;
  } = {},
): Promise<AppliedAction[]> {
  const plan = planRetention(planChains(initial, await movedFiles(initial)), retentionPolicy(job, now));
  // An immutable repository: each file's date is the later of its immutable.json entry and its name's time plus the days (immutability.ts nameFloor).
  const days = opts.immutableDays;
  const record = days !== undefined ? await readImmutableRecord(dir, initial.storage) : undefined;
  const done: AppliedAction[] = [];
  let state = initial;
  /** Chains whose remaining actions are skipped: one of their points is held. */
  const stopped = new Set<string>();
  for (const action of plan.actions) {
    const chain = state.chains.find((c) => c.chainId === action.chainId);
    if (!chain) continue;
    if (stopped.has(action.chainId)) {
      done.push({ action, skipped: 'an earlier action of this chain is held' });
      continue;
    }
    const applied = await withHoldsLock(
      dir,
      `job "${job.name}"`,
      async () => {
        // A point served by instant recovery is never destroyed; retention catches up after the session ends.
        const held = await heldPoints(dir, state.storage);
        const holder =
          held.get('*') ??
          destroyedBy(action)
            .map((p) => held.get(p))
            .find((h) => h !== undefined);
        if (holder !== undefined) return { action, skipped: `point held by ${holder}` };
        const obstacle = record && immutableObstacle(action, chain, record, now, days);
        if (obstacle !== undefined) return { action, skipped: obstacle };
        if (record && action.type === 'merge') return { action, skipped: 'an immutable repository never merges into a committed full' };
        const applied = await carryOut(action, chain, dir, state.storage, record !== undefined, opts.pool);
        if (record) await forgetDeleted(dir, filesDeletedBy(action, chain), state.storage);
        return applied;
      },
      { waitMs: HOLDS_WAIT_MS, storage: state.storage },
    );
    done.push(applied);
    // Later merges of this chain build on a held one: stop here for the chain (other chains go on).
    if (applied.skipped !== undefined) stopped.add(action.chainId);
    else state = await scanJob(dir, state.storage);
  }
  return done;
}

function destroyedBy(action: RetentionAction): readonly string[] {
  return action.type === 'delete-chain' || action.type === 'delete-increments'
    ? action.pointIds
    : action.type === 'merge'
      ? [action.fullPointId]
      : [action.pointId];
}

async function carryOut(
  action: RetentionAction,
  chain: Chain,
  dir: string,
  storage: Storage,
  immutable: boolean,
  pool: BlockWorkerPool | undefined,
): Promise<AppliedAction> {
  const remove = async (path: string, s: Storage): Promise<void> => {
    if (immutable) await unlockForDelete(path);
    await removeDurable(path, s);
  };
  if (action.type === 'delete-chain') {
    // Newest dependants first: an interruption leaves a shorter chain whose points are whole.
    for (const f of [...chain.increments].reverse()) await remove(join(dir, f.name), storage);
    for (const f of [...chain.rollbacks].reverse()) await remove(join(dir, f.name), storage);
    await remove(join(dir, chain.full.name), storage);
  } else if (action.type === 'delete-increments') {
    for (const f of [...chain.increments].reverse()) if (action.pointIds.includes(f.root.pointId)) await remove(join(dir, f.name), storage);
  } else if (action.type === 'delete-rollback') {
    const rb = chain.rollbacks.find((f) => f.root.pointId === action.pointId);
    if (rb && rb === chain.rollbacks[chain.rollbacks.length - 1]) await remove(join(dir, rb.name), storage);
  } else {
    return { action, merge: await mergeOldestIncrement(chain, storage, pool ? { pool } : {}) };
  }
  return { action };
}
