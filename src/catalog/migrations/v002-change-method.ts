import type { Migration } from './migration.js';

/**
 * How a run found its changes (cbt, hash or full) and why, and the same for
 * each point: the backup file always stored it, the catalog did not.
 */
export const v002ChangeMethod: Migration = {
  version: 2,
  description: 'change method of runs and points',
  async up(db) {
    // One column per statement: SQLite's ALTER TABLE adds only one at a time.
    await db.schema.alterTable('runs').addColumn('change_method', 'text').execute();
    await db.schema.alterTable('runs').addColumn('change_reason', 'text').execute();
    await db.schema.alterTable('points').addColumn('change_method', 'text').execute();
  },
};
