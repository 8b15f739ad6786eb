import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { localStorage, lockAt, removeDurable, type Storage } from '../storage/index.js';
import { readCheckedJson, writeCheckedJson } from './checked-json.js';

/**
 * A hold protects a restore point from retention while something uses it
 * (an instant-recovery session): jobs/<job>/holds/<holder>.json. A new hold
 * is written under the holds lock, and retention reads the holds and carries
 * out each action under it: a retention run that read the holds before a
 * session's hold existed has finished that action before the session can
 * look at the point, and one that comes later sees the hold.
 */
export async function writeHold(jobDir: string, holder: string, pointId: string, storage: Storage = localStorage): Promise<void> {
  await storage.mkdir(join(jobDir, 'holds'));
  await writeCheckedJson(join(jobDir, 'holds', `${holder}.json`), { holder, pointId }, storage);
}

export async function removeHold(jobDir: string, holder: string, storage: Storage = localStorage): Promise<void> {
  await removeDurable(join(jobDir, 'holds', `${holder}.json`), storage);
}

/**
 * What this host puts after a holder's kind (`session-`, `files-`) in the
 * holds it writes on storage other hosts can share (an object store: a
 * storage with hostPath), so that its sweeps of holds whose session or
 * process is gone touch its own only: 8 hex of its host name's SHA-256 and a
 * dash. Empty on a local file system, where every hold is this host's.
 */
export function hostHoldTag(storage: Storage = localStorage): string {
  return storage.hostPath === undefined ? '' : `${createHash('sha256').update(hostname()).digest('hex').slice(0, 8)}-`;
}

/** point id → holder. A hold that cannot be read holds everything ('*'): safety first. */
export async function heldPoints(jobDir: string, storage: Storage = localStorage): Promise<Map<string, string>> {
  const dir = join(jobDir, 'holds');
  const held = new Map<string, string>();
  for (const n of (await storage.list(dir)).filter((x) => x.endsWith('.json'))) {
    try {
      const h = await readCheckedJson<{ holder: string; pointId: string }>(join(dir, n), 'LFB_ERR_JOB_CORRUPT', storage);
      held.set(h.pointId, h.holder);
    } catch {
      held.set('*', n);
    }
  }
  return held;
}

/**
 * jobs/<job>/holds.lock: orders new holds against retention's actions. Not
 * the job lock: a backup holds that for its whole run, and a session must
 * not wait for a backup to publish a point.
 */
export const HOLDS_LOCK = 'holds.lock';

/** Callers in this process queue here first: LockFile orders processes, not the calls of one. */
const queues = new Map<string, Promise<void>>();

/**
 * Runs `fn` holding the job's holds lock. `waitMs` bounds the wait for
 * another process (LFB_ERR_JOB_LOCKED after it); callers in this process
 * wait their turn.
 */
export async function withHoldsLock<T>(
  jobDir: string,
  what: string,
  fn: () => Promise<T>,
  opts: { waitMs?: number; storage?: Storage | undefined } = {},
): Promise<T> {
  const storage = opts.storage ?? localStorage;
  const path = storage.hostPath?.(join(jobDir, HOLDS_LOCK)) ?? join(jobDir, HOLDS_LOCK);
  const before = queues.get(path) ?? Promise.resolve();
  let done!: () => void;
  const mine = new Promise<void>((r) => (done = r));
  const tail = before.then(() => mine);
  queues.set(path, tail);
  try {
    await before;
    const lock = await lockAt(storage, join(jobDir, HOLDS_LOCK), `the holds of ${what}`, { waitMs: opts.waitMs ?? 0 });
    try {
      return await fn();
    } finally {
      await lock.release();
    }
  } finally {
    done();
    if (queues.get(path) === tail) queues.delete(path);
  }
}
