import type { Migration } from './migration.js';

/**
 * The scheduler asks each round for a repository's queued and running runs
 * (repo = ? AND state IN (…), newest first). With only v003's indexes SQLite
 * took runs_repo_job_id for repo = ? and sorted every run of the repository:
 * 33 ms a round at 100k runs, on the server's event loop (better-sqlite3 is
 * synchronous), several rounds a second while backups start and end. With
 * (repo, state, id) it reads only the matching runs (0.02 ms).
 */
export const v004RunsRepoStateIndex: Migration = {
  version: 4,
  description: 'index for listing runs of a repository by state',
  async up(db) {
    await db.schema.createIndex('runs_repo_state_id').on('runs').columns(['repo', 'state', 'id']).execute();
  },
};
