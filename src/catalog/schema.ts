/**
 * The catalog's tables as Kysely sees them at the newest schema version
 * (src/catalog/migrations/ builds them step by step). Column names are
 * snake_case; src/catalog/sql-catalog.ts maps rows to the records of
 * catalog.ts. Times are ISO-8601 UTC strings (they sort as text, in both
 * databases); JSON columns (steps, gfs, definition) are text.
 */
import type { Generated } from 'kysely';

export interface SchemaVersionTable {
  version: number;
  description: string;
  applied_at: string;
}

export interface RunsTable {
  id: Generated<number>;
  repo: string;
  job: string;
  trigger: string;
  attempt: number;
  retry_of: number | null;
  state: string;
  queued_at: string;
  started_at: string | null;
  ended_at: string | null;
  bytes_read: number;
  bytes_stored: number;
  /** JSON object: milliseconds by step. */
  steps: string;
  error_code: string | null;
  error_message: string | null;
  point_id: string | null;
  change_method: string | null;
  change_reason: string | null;
  /** 'backup', 'surebackup' (version 7; older runs are backups) or 'copy' (a text column: no migration). */
  kind: Generated<string>;
  report_id: string | null;
}

export interface TasksTable {
  run_id: number;
  disk: number;
  disk_name: string;
  state: string;
  started_at: string | null;
  ended_at: string | null;
  bytes_read: number;
  bytes_stored: number;
}

export interface LogLinesTable {
  run_id: number;
  seq: number;
  at: string;
  level: string;
  message: string;
}

export interface JobsTable {
  repo: string;
  name: string;
  job_id: string;
  /** job.json as JSON text. */
  definition: string;
  updated_at: string;
}

export interface PointsTable {
  repo: string;
  job: string;
  point_id: string;
  seq: number;
  created_at: string;
  kind: string;
  file: string;
  chain_id: string;
  disk_bytes: number;
  stored_bytes: number;
  /** JSON array of GFS flags. */
  gfs: string;
  health: string;
  change_method: string | null;
  /** JSON object: what the API shows beyond the columns; null for points recorded without it. */
  detail: string | null;
}

export interface JobReadsTable {
  repo: string;
  job: string;
  signature: string;
  read_at: string;
  points: number;
  damaged_points: number;
  unavailable_points: number;
  damaged_files: number;
  stored_bytes: number;
  last_point_id: string | null;
  last_point_at: string | null;
}

export interface UsageSamplesTable {
  repo: string;
  at: string;
  bytes: number;
  free_bytes: number;
  total_bytes: number;
}

/** A SureBackup report; `vms` is the report's VMs with their tests as JSON text. */
export interface LabReportsTable {
  seq: Generated<number>;
  repo: string;
  id: string;
  started_at: string;
  ended_at: string;
  /** 1 when every VM booted and passed every test, else 0 (SQLite has no boolean). */
  ok: number;
  report_dir: string;
  vms: string;
  /** The SureBackup job's run that made it (version 7); null for a report of `surebackup run`. */
  run_id: number | null;
}

/** One VM's outcome in a report, by job and point: what a point's newest SureBackup result is read from. */
export interface LabVmResultsTable {
  report_seq: number;
  vm: number;
  repo: string;
  job: string;
  point_id: string;
  ok: number;
  tested_at: string;
}

export interface UsersTable {
  name: string;
  role: string;
  password_hash: string;
  created_at: string;
}

export interface ApiTokensTable {
  id: string;
  user_name: string;
  name: string;
  hash: string;
  created_at: string;
  last_used_at: string | null;
}

export interface WebSessionsTable {
  id_hash: string;
  user_name: string;
  csrf_token: string;
  created_at: string;
  expires_at: string;
}

export interface LeasesTable {
  name: string;
  holder: string;
  acquired_at: string;
  renewed_at: string;
  expires_at: string;
}

export interface CatalogSchema {
  catalog_schema: SchemaVersionTable;
  runs: RunsTable;
  tasks: TasksTable;
  log_lines: LogLinesTable;
  jobs: JobsTable;
  points: PointsTable;
  job_reads: JobReadsTable;
  usage_samples: UsageSamplesTable;
  lab_reports: LabReportsTable;
  lab_vm_results: LabVmResultsTable;
  users: UsersTable;
  api_tokens: ApiTokensTable;
  web_sessions: WebSessionsTable;
  leases: LeasesTable;
}

export type DatabaseKind = 'sqlite' | 'postgres';
