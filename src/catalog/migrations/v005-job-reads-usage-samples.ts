import type { Migration } from './migration.js';

/**
 * What lets the API answer job and point listings from the catalog instead
 * of reading every backup file on each request:
 * - job_reads: for each job the catalog copied from its repository, the
 *   signature of the files it was copied from (names, sizes, modification
 *   times: one folder listing and stats, no file opened), when, and the
 *   summary of what was read (counts, bytes, newest point). A request
 *   compares the signature with the folder's and reads the job again only
 *   when they differ.
 * - points.detail: what the API shows of a point beyond the columns (its
 *   parent, disk sizes, problem, how each disk's changes were found), as
 *   JSON, so the point listing needs no backup file either.
 * - usage_samples: a repository's usage over time (the bytes its backup
 *   files take, the file system's free and total bytes), for capacity charts.
 */
export const v005JobReadsUsageSamples: Migration = {
  version: 5,
  description: 'job read signatures and repository usage samples',
  async up(db) {
    await db.schema.alterTable('points').addColumn('detail', 'text').execute();

    await db.schema
      .createTable('job_reads')
      .addColumn('repo', 'text', (c) => c.notNull())
      .addColumn('job', 'text', (c) => c.notNull())
      .addColumn('signature', 'text', (c) => c.notNull())
      .addColumn('read_at', 'text', (c) => c.notNull())
      .addColumn('points', 'integer', (c) => c.notNull())
      .addColumn('damaged_points', 'integer', (c) => c.notNull())
      .addColumn('unavailable_points', 'integer', (c) => c.notNull())
      .addColumn('damaged_files', 'integer', (c) => c.notNull())
      .addColumn('stored_bytes', 'bigint', (c) => c.notNull())
      .addColumn('last_point_id', 'text')
      .addColumn('last_point_at', 'text')
      .addPrimaryKeyConstraint('job_reads_pk', ['repo', 'job'])
      .execute();

    await db.schema
      .createTable('usage_samples')
      .addColumn('repo', 'text', (c) => c.notNull())
      .addColumn('at', 'text', (c) => c.notNull())
      .addColumn('bytes', 'bigint', (c) => c.notNull())
      .addColumn('free_bytes', 'bigint', (c) => c.notNull())
      .addColumn('total_bytes', 'bigint', (c) => c.notNull())
      // Also the index of a period's listing (repo = ? AND at BETWEEN …).
      .addPrimaryKeyConstraint('usage_samples_pk', ['repo', 'at'])
      .execute();
  },
};
