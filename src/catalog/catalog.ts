/**
 * The catalog: what the service remembers beside the repositories. Every run
 * and task with its log, the jobs and points it last saw in each repository
 * (a cache the repositories can rebuild: the backup files stay the truth),
 * and the server's users, API tokens and console sessions.
 *
 * One interface, several databases (SQLite embedded, PostgreSQL for several
 * servers): src/testing/catalog-conformance.ts is the suite each passes
 * (test/catalog-sqlite.test.ts, test/catalog-postgres.test.ts).
 * Times are ISO-8601 strings in UTC; sizes are bytes (numbers: below 2^53).
 */

// SureBackup reports' records: lab-records.ts.
export * from './lab-records.js';
import type { LabPointResult, LabReportFilter, LabReportPage, LabReportRecord } from './lab-records.js';

export const RUN_STATES = ['queued', 'running', 'succeeded', 'warning', 'failed', 'interrupted', 'stopped'] as const;
export type RunState = (typeof RUN_STATES)[number];

/** What started a run. `after` is a run chained after another job's run. */
export const RUN_TRIGGERS = ['schedule', 'retry', 'manual', 'api', 'after', 'missed'] as const;
export type RunTrigger = (typeof RUN_TRIGGERS)[number];

/**
 * What a run does: back up a job, boot and test a SureBackup job's group, or
 * copy a job's new points to another repository (its `job` is then the
 * SureBackup job's or the copy job's name).
 */
export const RUN_KINDS = ['backup', 'surebackup', 'copy', 'tier'] as const;
export type RunKind = (typeof RUN_KINDS)[number];

export const CHANGE_METHODS = ['cbt', 'hash', 'full'] as const;
export type ChangeMethod = (typeof CHANGE_METHODS)[number];

export const USER_ROLES = ['admin', 'operator', 'viewer', 'mover'] as const;
export type UserRole = (typeof USER_ROLES)[number];

export interface RunRecord {
  /** Assigned by the catalog: increasing, unique. */
  readonly id: number;
  /** The repository's root folder. */
  readonly repo: string;
  readonly job: string;
  readonly kind: RunKind;
  readonly trigger: RunTrigger;
  /** 1 for the first try; a retry of a failed run has the next number. */
  readonly attempt: number;
  /** The run this one retries, if any. */
  readonly retryOf: number | null;
  readonly state: RunState;
  readonly queuedAt: string;
  readonly startedAt: string | null;
  readonly endedAt: string | null;
  readonly bytesRead: number;
  readonly bytesStored: number;
  /** Milliseconds by step (scan, open, data, commit, retention, …). */
  readonly steps: Readonly<Record<string, number>>;
  readonly errorCode: string | null;
  readonly errorMessage: string | null;
  /** The restore point the run made. */
  readonly pointId: string | null;
  readonly changeMethod: ChangeMethod | null;
  /** Why the changes were found that way (e.g. why CBT fell back). */
  readonly changeReason: string | null;
  /** A SureBackup run's report (getLabReport(repo, reportId)). */
  readonly reportId: string | null;
}

/** `kind` defaults to 'backup'. */
export type NewRun = Pick<RunRecord, 'repo' | 'job' | 'trigger' | 'attempt' | 'retryOf' | 'queuedAt'> & { readonly kind?: RunKind | undefined };
/** What a run's progress or end changes. */
export type RunUpdate = Partial<Omit<RunRecord, 'id' | 'repo' | 'job' | 'kind' | 'trigger' | 'attempt' | 'retryOf' | 'queuedAt'>>;

/** One disk of a run. */
export interface TaskRecord {
  readonly runId: number;
  readonly disk: number;
  readonly diskName: string;
  readonly state: RunState;
  readonly startedAt: string | null;
  readonly endedAt: string | null;
  readonly bytesRead: number;
  readonly bytesStored: number;
}

export interface LogLine {
  readonly runId: number;
  /** 1, 2, 3… within the run. */
  readonly seq: number;
  readonly at: string;
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly message: string;
}

export interface RunFilter {
  readonly repo?: string;
  readonly job?: string;
  /** Only runs of this kind (default: both). */
  readonly kind?: RunKind;
  readonly states?: readonly RunState[];
  /** Runs queued at or after this time. */
  readonly since?: string;
  /** Newest first; at most this many (default 50, at most 1000). */
  readonly limit?: number;
  /** Runs with an id below this (the `next` of the previous page). */
  readonly before?: number;
}

export interface RunPage {
  readonly runs: readonly RunRecord[];
  /** Pass as `before` for the next page; null when this was the last. */
  readonly next: number | null;
}

/** listRuns' page with each run as JSON text: its repository beside it, and the text JSON.parse makes the record of. */
export interface RunJsonPage {
  readonly runs: readonly { readonly repo: string; readonly json: string }[];
  readonly next: number | null;
}

/** A job as the catalog last saw it in its repository (job.json is the truth). */
export interface JobRecord {
  readonly repo: string;
  readonly name: string;
  readonly jobId: string;
  /** The job definition (job.json) as JSON. */
  readonly definition: Readonly<Record<string, unknown>>;
  readonly updatedAt: string;
}

/** A restore point as the catalog last saw it (the backup files are the truth). */
export interface PointRecord {
  readonly repo: string;
  readonly job: string;
  readonly pointId: string;
  readonly seq: number;
  readonly createdAt: string;
  readonly kind: 'full' | 'increment' | 'rollback';
  readonly file: string;
  readonly chainId: string;
  readonly diskBytes: number;
  readonly storedBytes: number;
  /** GFS flags the retention plan gives the point. */
  readonly gfs: readonly ('weekly' | 'monthly' | 'yearly')[];
  readonly health: 'ok' | 'damaged' | 'unavailable';
  readonly changeMethod: ChangeMethod | null;
  /** What the API shows of the point beyond these fields (JSON the catalog stores as given), when the reader recorded it. */
  readonly detail?: Readonly<Record<string, unknown>>;
}

/**
 * What the catalog last read of a job in its repository: the signature of
 * the job folder it read (its files' names, sizes and modification times,
 * so a reader can tell without opening a file whether the copy is still
 * that of the files), when, and the summary of the points it recorded.
 */
export interface JobReadRecord {
  readonly repo: string;
  readonly job: string;
  readonly signature: string;
  readonly readAt: string;
  /** Restorable points (health ok or damaged): unavailable ones are not counted. */
  readonly points: number;
  readonly damagedPoints: number;
  readonly unavailablePoints: number;
  /** Backup files that could not be read at all. */
  readonly damagedFiles: number;
  /** What the job's backup files take, all of them. */
  readonly storedBytes: number;
  /** The newest restorable point, if any. */
  readonly lastPointId: string | null;
  readonly lastPointAt: string | null;
}

/** A repository's usage at one time. */
export interface UsageSample {
  readonly repo: string;
  readonly at: string;
  /** What the repository's backup files take. */
  readonly bytes: number;
  /** The file system's space left for the repository, and its size. */
  readonly freeBytes: number;
  readonly totalBytes: number;
}

export interface UsageSampleFilter {
  /** Samples at or after this time. */
  readonly since?: string;
  /** Samples at or before this time. */
  readonly until?: string;
  /** The newest this many of the period (default 1000, at most 10000), returned oldest first. */
  readonly limit?: number;
}

export interface UserRecord {
  readonly name: string;
  readonly role: UserRole;
  /** A self-describing password hash (e.g. `scrypt$…`); never the password. */
  readonly passwordHash: string;
  readonly createdAt: string;
}

export interface TokenRecord {
  /** Public id (shown in listings); the secret part is only ever stored hashed. */
  readonly id: string;
  readonly user: string;
  readonly name: string;
  /** SHA-256 (hex) of the whole token. */
  readonly hash: string;
  readonly createdAt: string;
  readonly lastUsedAt: string | null;
}

/** A console login. */
/** What updateUser may change. */
export interface UserChange {
  readonly role?: UserRole | undefined;
  readonly passwordHash?: string | undefined;
}

export interface WebSessionRecord {
  /** SHA-256 (hex) of the cookie's value: a stolen catalog does not yield live cookies. */
  readonly idHash: string;
  readonly user: string;
  readonly csrfToken: string;
  readonly createdAt: string;
  readonly expiresAt: string;
}

/**
 * A named right held by one holder until `expiresAt` unless renewed: the
 * scheduler of a set of repositories runs on the one server, of several
 * sharing the catalog, that holds its lease. Times are the holders' clocks
 * (servers sharing a catalog keep their clocks in step, as with NTP).
 */
export interface LeaseRecord {
  readonly name: string;
  readonly holder: string;
  /** When this holder took it (kept across renewals). */
  readonly acquiredAt: string;
  readonly renewedAt: string;
  readonly expiresAt: string;
}

/** What acquireLease found and did. */
export interface LeaseAttempt {
  /** True when the caller holds the lease now (taken or renewed). */
  readonly held: boolean;
  /** The lease as it stands after the attempt (the other holder's when not held). */
  readonly lease: LeaseRecord;
  /** The lease as it stood before, when another holder had it (expired, since it was taken); undefined otherwise. */
  readonly takenFrom: LeaseRecord | undefined;
}

export interface Catalog {
  /** The schema version this catalog is at (migrations bring an older one up at open). */
  schemaVersion(): Promise<number>;

  createRun(run: NewRun): Promise<RunRecord>;
  /**
   * Changes a run and returns it as stored. With `onlyIf`, only while the run is in that state, in one statement: a
   * run is then returned unchanged when it is not (two servers moving one queued run, to running and to stopped).
   */
  updateRun(id: number, change: RunUpdate, onlyIf?: RunState): Promise<RunRecord>;
  /** LFB_ERR_RUN_NOT_FOUND when there is none. */
  getRun(id: number): Promise<RunRecord>;
  /** The runs that pass the filter, newest first, a page at a time. */
  listRuns(filter?: RunFilter): Promise<RunPage>;
  /** The same page, each run's JSON text made by the database: the API's run listings send it as it is. */
  listRunsAsJson(filter?: RunFilter): Promise<RunJsonPage>;
  /** Each named job's newest run in the repository (jobs without a run are absent): the job listings' last result, in one statement. */
  latestRuns(repo: string, jobs: readonly string[]): Promise<ReadonlyMap<string, RunRecord>>;
  /**
   * Runs left `running` or `queued` by a server that died: marked `interrupted` (returned); only those of `repos` when
   * given; with `runningOnly`, queued runs stay queued (a server taking over from another starts them).
   */
  interruptUnfinished(at: string, repos?: readonly string[], runningOnly?: boolean): Promise<readonly RunRecord[]>;

  putTask(task: TaskRecord): Promise<void>;
  listTasks(runId: number): Promise<readonly TaskRecord[]>;

  /** Appends lines to a run's log; their seq is assigned in order. */
  appendLog(runId: number, lines: readonly Omit<LogLine, 'runId' | 'seq'>[]): Promise<void>;
  /** Lines with seq above `afterSeq`, oldest first, at most `limit` (default 1000). */
  readLog(runId: number, afterSeq?: number, limit?: number): Promise<readonly LogLine[]>;

  putJob(job: JobRecord): Promise<void>;
  deleteJob(repo: string, name: string): Promise<void>;
  listJobs(repo?: string): Promise<readonly JobRecord[]>;

  /** Replaces everything recorded of one job's points with `points`. */
  replacePoints(repo: string, job: string, points: readonly PointRecord[]): Promise<void>;
  listPoints(repo: string, job: string): Promise<readonly PointRecord[]>;

  /**
   * Records a job as read from its repository, in one transaction: its
   * definition (as putJob), its points (as replacePoints) and the read's
   * signature and summary. A reader sees all of it or none.
   */
  recordJobRead(job: JobRecord, points: readonly PointRecord[], read: JobReadRecord): Promise<void>;
  /** The reads recorded for a repository's jobs, by job name. deleteJob forgets a job's. */
  listJobReads(repo: string): Promise<readonly JobReadRecord[]>;

  /** Records a usage sample; a second sample of one repository at the same time replaces the first. */
  addUsageSample(sample: UsageSample): Promise<void>;
  /** A repository's samples in a period, oldest first (see UsageSampleFilter.limit). */
  listUsageSamples(repo: string, filter?: UsageSampleFilter): Promise<readonly UsageSample[]>;
  /** Forgets every repository's samples older than `before`; returns how many. */
  deleteUsageSamplesBefore(before: string): Promise<number>;

  addUser(user: UserRecord): Promise<void>;
  getUser(name: string): Promise<UserRecord | undefined>;
  listUsers(): Promise<readonly UserRecord[]>;
  deleteUser(name: string): Promise<void>;
  /**
   * Changes a user's role and/or password hash and returns the user as now stored; a new password
   * hash ends the user's console sessions in the same transaction (API tokens stay). LFB_ERR_USER_NOT_FOUND
   * when there is no such user.
   */
  updateUser(name: string, change: UserChange): Promise<UserRecord>;

  addToken(token: TokenRecord): Promise<void>;
  findToken(hash: string): Promise<TokenRecord | undefined>;
  touchToken(id: string, at: string): Promise<void>;
  listTokens(user?: string): Promise<readonly TokenRecord[]>;
  deleteToken(id: string): Promise<void>;

  addWebSession(s: WebSessionRecord): Promise<void>;
  findWebSession(idHash: string): Promise<WebSessionRecord | undefined>;
  deleteWebSession(idHash: string): Promise<void>;
  deleteExpiredWebSessions(now: string): Promise<number>;

  /** Records a SureBackup report; one with the same repository and id is replaced (the same run recorded twice). */
  recordLabReport(report: LabReportRecord): Promise<void>;
  /** A repository's reports, newest recorded first; `before` naming no report is LFB_ERR_REPORT_NOT_FOUND. */
  listLabReports(filter: LabReportFilter): Promise<LabReportPage>;
  /** LFB_ERR_REPORT_NOT_FOUND when the repository has no report with that id. */
  getLabReport(repo: string, id: string): Promise<LabReportRecord>;
  /** Each point of the job with its newest SureBackup result, newest tested first. */
  latestLabResults(repo: string, job: string): Promise<readonly LabPointResult[]>;

  /**
   * Takes the lease `name` for `holder` until `at` + `ttlMs`, in one statement: when nobody holds it, when
   * `holder` does (a renewal), or when its holder let it expire by `at`. Of several callers at once, one gets it.
   */
  acquireLease(name: string, holder: string, at: string, ttlMs: number): Promise<LeaseAttempt>;
  /**
   * Gives the lease up at `at` if `holder` has it: it is then renewed and expired at `at`, so the next holder takes it
   * at once and learns when this one last acted (a server that stops lets another take over). True when it did.
   */
  releaseLease(name: string, holder: string, at: string): Promise<boolean>;
  getLease(name: string): Promise<LeaseRecord | undefined>;

  close(): Promise<void>;
}
