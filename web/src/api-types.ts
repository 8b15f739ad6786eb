/**
 * The API's answers as the console reads them (the OpenAPI document at
 * /api/v1/openapi.json is the full truth; these name only what pages use).
 */

export type RunState = 'queued' | 'running' | 'succeeded' | 'warning' | 'failed' | 'interrupted' | 'stopped';
export const FINISHED_STATES: readonly RunState[] = ['succeeded', 'warning', 'failed', 'interrupted', 'stopped'];
export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

export interface Gfs {
  weekly: number;
  monthly: number;
  yearly: number;
}

export interface JobDefinition {
  jobId: string;
  name: string;
  createdAt: string;
  disks: string[];
  method: 'forward' | 'forever' | 'reverse';
  retainPoints: number;
  retainDays?: number;
  activeFullDays: Weekday[];
  syntheticFullDays?: Weekday[];
  transformToRollbacks?: boolean;
  cbt?: boolean;
  diskFormat?: string;
  gfs?: Gfs;
  blockSize: number;
  compression: string;
  schedule?: string;
  window?: string;
  retries?: number;
  retryDelay?: string;
  after?: string;
  disabled?: boolean;
}

/** A job's last run as the job listing gives it. */
export interface LastRun {
  id: number;
  state: RunState;
  endedAt: string | null;
  errorCode: string | null;
}
/** A job's newest restorable point as the job listing gives it. */
export interface LastPoint {
  id: string;
  createdAt: string;
  ageSeconds: number;
}

/** GET /repositories/{repo}/jobs: each job. */
export interface JobSummary {
  repo: string;
  job: JobDefinition;
  /** Restorable points (damaged ones too). */
  points: number;
  damagedFiles: number;
  nextRunAt: string | null;
  damagedPoints: number;
  unavailablePoints: number;
  storedBytes: number;
  lastRun: LastRun | null;
  lastPoint: LastPoint | null;
}

export interface RepositoryUsage {
  name: string;
  root: string;
  jobs: { name: string; points: number; unavailablePoints: number; files: number; bytes: number; capacityBytes?: number }[];
  bytes: number;
  /** A repository with a capacity tier: what its recorded copies take there. */
  capacityBytes?: number;
  freeBytes: number;
  totalBytes: number;
}

export interface Run {
  id: number;
  repo: string;
  repoName: string;
  /** The backup job, or the SureBackup job of a surebackup run (which may have a backup job's name). */
  job: string;
  kind: 'backup' | 'surebackup' | 'copy' | 'tier';
  trigger: string;
  attempt: number;
  retryOf: number | null;
  state: RunState;
  queuedAt: string;
  startedAt: string | null;
  endedAt: string | null;
  bytesRead: number;
  bytesStored: number;
  steps: Record<string, number>;
  errorCode: string | null;
  errorMessage: string | null;
  pointId: string | null;
  changeMethod: string | null;
  changeReason: string | null;
  /** A SureBackup run's report. */
  reportId: string | null;
}
export interface RunPage {
  runs: Run[];
  next: number | null;
}
export interface Task {
  disk: number;
  diskName: string;
  state: RunState;
  startedAt: string | null;
  endedAt: string | null;
  bytesRead: number;
  bytesStored: number;
}
export interface LogLine {
  seq: number;
  at: string;
  level: 'debug' | 'info' | 'warn' | 'error';
  message: string;
}
export interface RunDetail {
  run: Run;
  tasks: Task[];
  log: LogLine[];
}
/** A run's `progress` event: bytes of the disk being read. */
export interface Progress {
  disk: number;
  diskCount: number;
  bytesDone: number;
  bytesTotal: number;
}

export interface PointSummary {
  id: string;
  createdAt: string;
  kind: 'full' | 'increment' | 'rollback';
  health: 'ok' | 'damaged' | 'unavailable';
  storedBytes: number | null;
}

/** A sample of a repository's usage (GET /repositories/{repo}/usage-history). */
export interface UsageSample {
  at: string;
  bytes: number;
  freeBytes: number;
  totalBytes: number;
}
