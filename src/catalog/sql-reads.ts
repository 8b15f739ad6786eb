/**
 * The statements of SqlCatalog for jobs, their reads and usage samples
 * (arguments already checked by it; each runs on the database or inside the
 * transaction it is given).
 */
import type { Kysely } from 'kysely';
import type { JobReadRecord, JobRecord, RunRecord, UsageSample } from './catalog.js';
import * as rows from './rows.js';
import type { CatalogSchema } from './schema.js';

type Db = Kysely<CatalogSchema>;

export async function upsertJob(db: Db, job: JobRecord): Promise<void> {
  const row = rows.jobToRow(job);
  await db
    .insertInto('jobs')
    .values(row)
    .onConflict((oc) => oc.columns(['repo', 'name']).doUpdateSet({ job_id: row.job_id, definition: row.definition, updated_at: row.updated_at }))
    .execute();
}

export async function upsertJobRead(db: Db, read: JobReadRecord): Promise<void> {
  const row = rows.jobReadToRow(read);
  await db
    .insertInto('job_reads')
    .values(row)
    .onConflict((oc) =>
      oc.columns(['repo', 'job']).doUpdateSet({
        signature: row.signature,
        read_at: row.read_at,
        points: row.points,
        damaged_points: row.damaged_points,
        unavailable_points: row.unavailable_points,
        damaged_files: row.damaged_files,
        stored_bytes: row.stored_bytes,
        last_point_id: row.last_point_id,
        last_point_at: row.last_point_at,
      }),
    )
    .execute();
}

/**
 * Each backup job's newest run: one index search per job on runs (repo, job, id),
 * joined into one statement (one round trip whatever the number of jobs).
 */
export async function latestRunsOf(db: Db, repo: string, jobs: readonly string[]): Promise<RunRecord[]> {
  if (jobs.length === 0) return [];
  // Backup runs only (a SureBackup job may have a backup job's name). Newest first with a limit, not max(id):
  // the index (repo, job, id) is walked from its end and stops at the first backup run.
  const newest = (job: string) =>
    db
      .selectFrom((sub) =>
        sub
          .selectFrom('runs')
          .select('id')
          .where('repo', '=', repo)
          .where('job', '=', job)
          .where('kind', '=', 'backup')
          .orderBy('id', 'desc')
          .limit(1)
          .as('newest'),
      )
      .select('newest.id');
  let ids = newest(jobs[0]!);
  for (const job of jobs.slice(1)) ids = ids.unionAll(newest(job));
  const found = await db.selectFrom('runs').selectAll().where('id', 'in', ids).execute();
  return found.map(rows.runFromRow);
}

export async function readsOf(db: Db, repo: string): Promise<JobReadRecord[]> {
  const found = await db.selectFrom('job_reads').selectAll().where('repo', '=', repo).orderBy('job').execute();
  return found.map(rows.jobReadFromRow);
}

/** A second sample of one repository at the same time replaces the first. */
export async function insertUsageSample(db: Db, sample: UsageSample): Promise<void> {
  const row = rows.usageSampleToRow(sample);
  await db
    .insertInto('usage_samples')
    .values(row)
    .onConflict((oc) => oc.columns(['repo', 'at']).doUpdateSet({ bytes: row.bytes, free_bytes: row.free_bytes, total_bytes: row.total_bytes }))
    .execute();
}

/** The newest `limit` samples of the period (a chart of a long period still ends at its end), oldest first. */
export async function usageSamplesOf(db: Db, repo: string, since: string | undefined, until: string | undefined, limit: number): Promise<UsageSample[]> {
  let q = db.selectFrom('usage_samples').selectAll().where('repo', '=', repo);
  if (since !== undefined) q = q.where('at', '>=', since);
  if (until !== undefined) q = q.where('at', '<=', until);
  const found = await q.orderBy('at', 'desc').limit(limit).execute();
  return found.reverse().map(rows.usageSampleFromRow);
}

export async function deleteUsageSamples(db: Db, before: string): Promise<number> {
  const result = await db.deleteFrom('usage_samples').where('at', '<', before).executeTakeFirst();
  return Number(result.numDeletedRows);
}
