import type { Migration } from './migration.js';

/**
 * SureBackup jobs' runs in the runs table:
 * - runs.kind: 'backup' (every run before this version) or 'surebackup'
 *   (its `job` names a SureBackup job, which may share a backup job's name).
 * - runs.report_id and lab_reports.run_id: a SureBackup run and its report
 *   name each other, so the API and the console go from one to the other.
 */
export const v007RunKind: Migration = {
  version: 7,
  description: 'run kind; SureBackup runs linked to their reports',
  async up(db) {
    await db.schema
      .alterTable('runs')
      .addColumn('kind', 'text', (c) => c.notNull().defaultTo('backup'))
      .execute();
    await db.schema.alterTable('runs').addColumn('report_id', 'text').execute();
    await db.schema.alterTable('lab_reports').addColumn('run_id', 'integer').execute();
    await db.schema.createIndex('lab_reports_run_id').on('lab_reports').column('run_id').execute();
  },
};
