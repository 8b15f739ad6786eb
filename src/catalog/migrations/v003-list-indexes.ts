import type { Migration } from './migration.js';

/**
 * What keeps the list endpoints fast with 100k runs: every listing is newest
 * first (id descending), so each filter's index ends in id where it can.
 */
export const v003ListIndexes: Migration = {
  version: 3,
  description: 'indexes for listing runs, points, tokens and sessions',
  async up(db) {
    await db.schema.createIndex('runs_job_id').on('runs').columns(['job', 'id']).execute();
    await db.schema.createIndex('runs_repo_job_id').on('runs').columns(['repo', 'job', 'id']).execute();
    await db.schema.createIndex('runs_state_id').on('runs').columns(['state', 'id']).execute();
    await db.schema.createIndex('runs_queued_at').on('runs').column('queued_at').execute();
    await db.schema.createIndex('points_job_seq').on('points').columns(['repo', 'job', 'seq']).execute();
    await db.schema.createIndex('api_tokens_user').on('api_tokens').column('user_name').execute();
    await db.schema.createIndex('web_sessions_expires_at').on('web_sessions').column('expires_at').execute();
    await db.schema.createIndex('web_sessions_user').on('web_sessions').column('user_name').execute();
  },
};
