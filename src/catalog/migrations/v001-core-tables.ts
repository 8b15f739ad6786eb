import type { Migration } from './migration.js';

/** The first schema: runs, tasks, log lines, jobs, points, users, tokens, console sessions. */
export const v001CoreTables: Migration = {
  version: 1,
  description: 'core tables',
  async up(db, kind) {
    await db.schema
      .createTable('runs')
      // Ids only ever increase: AUTOINCREMENT never reuses a deleted run's id in SQLite;
      // an identity column is a sequence in PostgreSQL.
      .addColumn('id', 'integer', (c) => (kind === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey().generatedByDefaultAsIdentity()))
      .addColumn('repo', 'text', (c) => c.notNull())
      .addColumn('job', 'text', (c) => c.notNull())
      .addColumn('trigger', 'text', (c) => c.notNull())
      .addColumn('attempt', 'integer', (c) => c.notNull())
      .addColumn('retry_of', 'integer')
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('queued_at', 'text', (c) => c.notNull())
      .addColumn('started_at', 'text')
      .addColumn('ended_at', 'text')
      .addColumn('bytes_read', 'bigint', (c) => c.notNull().defaultTo(0))
      .addColumn('bytes_stored', 'bigint', (c) => c.notNull().defaultTo(0))
      .addColumn('steps', 'text', (c) => c.notNull().defaultTo('{}'))
      .addColumn('error_code', 'text')
      .addColumn('error_message', 'text')
      .addColumn('point_id', 'text')
      .execute();

    await db.schema
      .createTable('tasks')
      .addColumn('run_id', 'integer', (c) => c.notNull())
      .addColumn('disk', 'integer', (c) => c.notNull())
      .addColumn('disk_name', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('started_at', 'text')
      .addColumn('ended_at', 'text')
      .addColumn('bytes_read', 'bigint', (c) => c.notNull().defaultTo(0))
      .addColumn('bytes_stored', 'bigint', (c) => c.notNull().defaultTo(0))
      .addPrimaryKeyConstraint('tasks_pk', ['run_id', 'disk'])
      .execute();

    await db.schema
      .createTable('log_lines')
      .addColumn('run_id', 'integer', (c) => c.notNull())
      .addColumn('seq', 'integer', (c) => c.notNull())
      .addColumn('at', 'text', (c) => c.notNull())
      .addColumn('level', 'text', (c) => c.notNull())
      .addColumn('message', 'text', (c) => c.notNull())
      // Also the guard that two writers can never give one seq twice.
      .addPrimaryKeyConstraint('log_lines_pk', ['run_id', 'seq'])
      .execute();

    await db.schema
      .createTable('jobs')
      .addColumn('repo', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('job_id', 'text', (c) => c.notNull())
      .addColumn('definition', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('jobs_pk', ['repo', 'name'])
      .execute();

    await db.schema
      .createTable('points')
      .addColumn('repo', 'text', (c) => c.notNull())
      .addColumn('job', 'text', (c) => c.notNull())
      .addColumn('point_id', 'text', (c) => c.notNull())
      .addColumn('seq', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('file', 'text', (c) => c.notNull())
      .addColumn('chain_id', 'text', (c) => c.notNull())
      .addColumn('disk_bytes', 'bigint', (c) => c.notNull())
      .addColumn('stored_bytes', 'bigint', (c) => c.notNull())
      .addColumn('gfs', 'text', (c) => c.notNull().defaultTo('[]'))
      .addColumn('health', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('points_pk', ['repo', 'job', 'point_id'])
      .execute();

    await db.schema
      .createTable('users')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('role', 'text', (c) => c.notNull())
      .addColumn('password_hash', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('api_tokens')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('user_name', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('hash', 'text', (c) => c.notNull().unique())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('last_used_at', 'text')
      .execute();

    await db.schema
      .createTable('web_sessions')
      .addColumn('id_hash', 'text', (c) => c.primaryKey())
      .addColumn('user_name', 'text', (c) => c.notNull())
      .addColumn('csrf_token', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .execute();
  },
};
