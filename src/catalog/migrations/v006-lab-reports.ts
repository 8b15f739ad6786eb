import type { Migration } from './migration.js';

/**
 * SureBackup reports, recorded by the server when `lifeboat surebackup run`
 * hands its report over, for the API and the console:
 * - lab_reports: one row a report, the VMs and their tests as JSON (the API
 *   shows a report whole); `seq` orders them as recorded (newest first, the
 *   paging key), (repo, id) names one.
 * - lab_vm_results: each VM's outcome by job and point, so a job's points
 *   timeline finds each point's newest result without reading every report.
 */
export const v006LabReports: Migration = {
  version: 6,
  description: 'SureBackup reports',
  async up(db, kind) {
    await db.schema
      .createTable('lab_reports')
      .addColumn('seq', 'integer', (c) => (kind === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey().generatedByDefaultAsIdentity()))
      .addColumn('repo', 'text', (c) => c.notNull())
      .addColumn('id', 'text', (c) => c.notNull())
      .addColumn('started_at', 'text', (c) => c.notNull())
      .addColumn('ended_at', 'text', (c) => c.notNull())
      .addColumn('ok', 'integer', (c) => c.notNull())
      .addColumn('report_dir', 'text', (c) => c.notNull())
      .addColumn('vms', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('lab_reports_repo_id').on('lab_reports').columns(['repo', 'id']).unique().execute();
    // The listing: repo = ? newest first.
    await db.schema.createIndex('lab_reports_repo_seq').on('lab_reports').columns(['repo', 'seq']).execute();

    await db.schema
      .createTable('lab_vm_results')
      .addColumn('report_seq', 'integer', (c) => c.notNull())
      .addColumn('vm', 'integer', (c) => c.notNull())
      .addColumn('repo', 'text', (c) => c.notNull())
      .addColumn('job', 'text', (c) => c.notNull())
      .addColumn('point_id', 'text', (c) => c.notNull())
      .addColumn('ok', 'integer', (c) => c.notNull())
      .addColumn('tested_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('lab_vm_results_pk', ['report_seq', 'vm'])
      .execute();
    await db.schema.createIndex('lab_vm_results_job').on('lab_vm_results').columns(['repo', 'job', 'report_seq']).execute();
  },
};
