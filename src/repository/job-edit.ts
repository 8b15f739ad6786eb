import { rm } from 'node:fs/promises';
import { TieredStorage } from './tiered-storage.js';
import { join } from 'node:path';
import { LifeboatError, fromFsError } from '../core/errors.js';
import { lockAt, removeDurable } from '../storage/index.js';
import { writeCheckedJson } from './checked-json.js';
import { heldPoints, withHoldsLock } from './holds.js';
import { JOB_FILE, checkAfter, loadJob, validateJobName, validateJobSettings, type JobDefinition } from './job.js';
import { scanJob } from './job-state.js';
import { refuseRewritingJob, unlockJobForDelete } from './immutability.js';
import type { Repository } from './repository.js';

/**
 * jobs/<job>/lock: one writer of a job at a time. A backup run holds it for
 * the whole run, so a change of the job's settings never lands in the middle
 * of one, and a deleted job is never written to.
 */
export const JOB_LOCK = 'lock';

/** What `job set` may change: everything `job create` sets, never the job's identity. */
export type JobSettings = Omit<JobDefinition, 'version' | 'jobId' | 'name' | 'createdAt' | 'blockSize' | 'compression'>;

async function withJobLock<T>(repo: Repository, name: string, fn: () => Promise<T>, waitMs: number): Promise<T> {
  const lock = await lockAt(repo.storage, join(repo.jobDir(name), JOB_LOCK), `job "${name}"`, { waitMs });
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

/**
 * Changes a job's settings under the job lock: `change` gets the definition
 * as it is now (read again once the lock is held), and the result must pass
 * the rules of `job create`. job.json is replaced atomically.
 */
export async function updateJob(
  repo: Repository,
  name: string,
  change: (now: JobDefinition) => Partial<JobSettings>,
  opts: { waitMs?: number } = {},
): Promise<{ before: JobDefinition; after: JobDefinition }> {
  // A change the rules refuse is refused at once, without waiting for a running backup; checked again under the lock.
  const now = await loadJob(repo, name);
  const planned = withoutUndefined({ ...now, ...change(now) }) as unknown as JobDefinition;
  validateJobSettings(planned);
  refuseRewritingJob(repo, planned);
  if (planned.after !== undefined && planned.after !== now.after) await checkAfter(repo, name, planned.after);
  return withJobLock(
    repo,
    name,
    async () => {
      const before = await loadJob(repo, name);
      const after = withoutUndefined({ ...before, ...change(before) }) as unknown as JobDefinition;
      validateJobSettings(after);
      refuseRewritingJob(repo, after);
      if (after.after !== undefined && after.after !== before.after) await checkAfter(repo, name, after.after);
      await writeCheckedJson(join(repo.jobDir(name), JOB_FILE), after, repo.storage);
      return { before, after };
    },
    opts.waitMs ?? 0,
  );
}

/** Optional settings set to undefined are left out of job.json, as `job create` leaves them out. */
function withoutUndefined(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

/**
 * Deletes a job's folder under the job lock and the holds lock (no backup
 * runs, no instant-recovery session takes a new hold meanwhile). It refuses
 * while a session holds one of its points, and refuses when the job has
 * backup files unless `withPoints`. job.json goes first, so a deletion cut
 * short leaves a folder `job delete` finishes (it needs no job.json).
 */
export async function deleteJob(
  repo: Repository,
  name: string,
  opts: { withPoints: boolean; waitMs?: number; repoArg?: string; now: Date },
): Promise<{ pointsDeleted: number; filesDeleted: number }> {
  validateJobName(name);
  if (!(await repo.listJobs()).includes(name)) await loadJob(repo, name); // throws LFB_ERR_JOB_NOT_FOUND with the list of jobs
  const dir = repo.jobDir(name);
  const repoFlag = `--repo ${opts.repoArg ?? repo.root}`;
  return withJobLock(
    repo,
    name,
    () =>
      withHoldsLock(
        dir,
        `job "${name}"`,
        async () => {
          const held = await heldPoints(dir, repo.storage);
          if (held.size > 0) {
            const [point, holder] = [...held][0]!;
            // Sessions hold as session-<name> (an unreadable hold is known by its file name, session-<name>.json).
            const sessionName = /^session-(.+?)(?:\.json)?$/.exec(holder)?.[1];
            throw new LifeboatError(
              'LFB_ERR_POINT_HELD',
              sessionName !== undefined
                ? `job "${name}" cannot be deleted: instant-recovery session "${sessionName}" uses its point ${point}; stop it first (\`lifeboat instant stop ${sessionName} ${repoFlag}\`)`
                : `job "${name}" cannot be deleted: ${holder} holds its point ${point === '*' ? '(an unreadable hold)' : point}; stop what uses it first`,
              { details: { job: name, point, holder } },
            );
          }
          const state = await scanJob(dir, repo.storage);
          const files = (await repo.storage.list(dir)).filter((n) => !n.startsWith('.') && /\.(vbk|vib|vrb)$/.test(n));
          if (files.length > 0 && !opts.withPoints) {
            throw new LifeboatError(
              'LFB_ERR_JOB_HAS_POINTS',
              `job "${name}" has ${state.points.length} restore point(s) in ${files.length} backup file(s). To keep them, keep the job (\`lifeboat job set\` changes it; \`lifeboat restore\` copies a point out first); to delete them with the job, run \`lifeboat job delete ${name} ${repoFlag} --with-points\``,
              { details: { job: name, points: state.points.length, files: files.length } },
            );
          }
          // On an immutable repository: refused while a file's date has not come (before anything goes), else unlocked.
          await unlockJobForDelete(repo, name, files, opts.now);
          // What a capacity tier holds of the job goes first: a store that fails leaves the job whole, to delete again.
          if (repo.storage instanceof TieredStorage) await repo.storage.removeCapacityFolder(dir);
          await removeDurable(join(dir, JOB_FILE), repo.storage);
          try {
            // A backup waiting for the lock may add its lock attempt's temporary file meanwhile: rm retries on ENOTEMPTY.
            if (repo.storage.removeFolder !== undefined) await repo.storage.removeFolder(dir);
            else await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
          } catch (err) {
            throw fromFsError(err, 'delete job folder', dir);
          }
          return { pointsDeleted: state.points.length, filesDeleted: files.length };
        },
        { storage: repo.storage },
      ),
    opts.waitMs ?? 0,
  );
}
