/**
 * The Catalog on a Kysely database: the same queries for SQLite and
 * PostgreSQL (database.ts holds the few differences). Every database failure
 * leaves as LFB_ERR_CATALOG with the database's own words.
 */
import { LifeboatError } from '../core/errors.js';
import {
  RUN_STATES,
  RUN_KINDS,
  RUN_TRIGGERS,
  USER_ROLES,
  type Catalog,
  type JobReadRecord,
  type JobRecord,
  type LabPointResult,
  type LeaseAttempt,
  type LeaseRecord,
  type LabReportFilter,
  type LabReportPage,
  type LabReportRecord,
  type LogLine,
  type NewRun,
  type PointRecord,
  type RunFilter,
  type RunJsonPage,
  type RunPage,
  type RunRecord,
  type RunState,
  type RunUpdate,
  type TaskRecord,
  type TokenRecord,
  type UsageSample,
  type UsageSampleFilter,
  type UserChange,
  type UserRecord,
  type WebSessionRecord,
} from './catalog.js';
import { INSERT_CHUNK, checkedRunPage, chunks, invalid, isoInstant, oneOf, pageSize, runNotFound } from './checks.js';
import { catalogError, type CatalogDatabase } from './database.js';
import * as accounts from './sql-accounts.js';
import { readSchemaVersion } from './migrate.js';
import * as rows from './rows.js';
import { labReportOf, labReportsOf, latestResultsOf, writeLabReport } from './sql-lab-reports.js';
import { giveUpLease, leaseNamed, takeLease } from './sql-leases.js';
import { appendLines, insertRun, lockRun, markInterrupted, runsNewestFirst, runsNewestFirstAsJson, upsertTask } from './sql-runs.js';
import { deleteUsageSamples, insertUsageSample, latestRunsOf, readsOf, upsertJob, upsertJobRead, usageSamplesOf } from './sql-reads.js';

const DEFAULT_LOG_PAGE = 1000;
const DEFAULT_USAGE_SAMPLES = 1000;
const MAX_USAGE_SAMPLES = 10_000;
const MAX_LOG_PAGE = 10_000;
const DEFAULT_REPORT_PAGE = 50;
const MAX_REPORT_PAGE = 1000;
const LATEST_RUNS_SLICE = 400;
const LOG_LEVELS: readonly LogLine['level'][] = ['debug', 'info', 'warn', 'error'];

/** Every point given for one job's replacement belongs to that job. */
function checkPointsOf(repo: string, job: string, points: readonly PointRecord[]): void {
  const stray = points.find((p) => p.repo !== repo || p.job !== job);
  if (stray !== undefined) throw invalid(`point ${stray.pointId} belongs to ${stray.repo} ${stray.job}, not to ${repo} ${job}`);
}

export class SqlCatalog implements Catalog {
  private closed = false;

  constructor(private readonly database: CatalogDatabase) {}

  private get db() {
    return this.database.db;
  }

  /** Runs a catalog operation; any database error becomes LFB_ERR_CATALOG. */
  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new LifeboatError('LFB_ERR_CATALOG', `catalog ${this.database.label} is closed`);
    try {
      return await fn();
    } catch (err) {
      throw catalogError(this.database.label, err);
    }
  }

  async schemaVersion(): Promise<number> {
    return this.guard(() => readSchemaVersion(this.db));
  }

  // Runs ----------------------------------------------------------------------

  async createRun(run: NewRun): Promise<RunRecord> {
    oneOf(run.trigger, RUN_TRIGGERS, 'trigger');
    if (run.kind !== undefined) oneOf(run.kind, RUN_KINDS, 'kind');
    if (!Number.isInteger(run.attempt) || run.attempt < 1) throw invalid(`attempt must be a whole number of at least 1 (got ${run.attempt})`);
    return this.guard(async () => {
      const row = await insertRun(this.db, run);
      return rows.runFromRow(row);
    });
  }

  async updateRun(id: number, change: RunUpdate, onlyIf?: RunState): Promise<RunRecord> {
    if (change.state !== undefined) oneOf(change.state, RUN_STATES, 'state');
    if (onlyIf !== undefined) oneOf(onlyIf, RUN_STATES, 'state');
    const columns = rows.runUpdateColumns(change);
    if (Object.keys(columns).length === 0) return this.getRun(id);
    return this.guard(async () => {
      let q = this.db.updateTable('runs').set(columns).where('id', '=', id);
      if (onlyIf !== undefined) q = q.where('state', '=', onlyIf);
      const row = await q.returningAll().executeTakeFirst();
      if (row === undefined) {
        if (onlyIf !== undefined) return this.getRun(id);
        throw runNotFound(id);
      }
      return rows.runFromRow(row);
    });
  }

  async getRun(id: number): Promise<RunRecord> {
    return this.guard(async () => {
      const row = await this.db.selectFrom('runs').selectAll().where('id', '=', id).executeTakeFirst();
      if (row === undefined) throw runNotFound(id);
      return rows.runFromRow(row);
    });
  }

  async listRuns(filter: RunFilter = {}): Promise<RunPage> {
    return this.runPage(filter, runsNewestFirst, rows.runFromColumns);
  }

  async listRunsAsJson(filter: RunFilter = {}): Promise<RunJsonPage> {
    return this.runPage(filter, runsNewestFirstAsJson, (c) => ({ repo: c[1] as string, json: c[2] as string }));
  }

  /** A page of runs read by `read` (rows as arrays, the run's id first), each row made a run by `toRun`. */
  private async runPage<T>(filter: RunFilter, read: typeof runsNewestFirst, toRun: (columns: unknown[]) => T): Promise<{ runs: T[]; next: number | null }> {
    const checked = checkedRunPage(filter);
    if (checked === undefined) return { runs: [], next: null };
    const { limit, since } = checked;
    return this.guard(async () => {
      // One row more than the page tells whether another page follows.
      const found = await read(this.database, filter, since, limit + 1);
      const page = found.slice(0, limit);
      return { runs: page.map(toRun), next: found.length > limit ? (page[page.length - 1]![0] as number) : null };
    });
  }

  async latestRuns(repo: string, jobs: readonly string[]): Promise<ReadonlyMap<string, RunRecord>> {
    const found = new Map<string, RunRecord>();
    // A compound select has at most 500 terms in SQLite: long lists go in slices.
    for (const slice of chunks([...new Set(jobs)], LATEST_RUNS_SLICE))
      for (const r of await this.guard(() => latestRunsOf(this.db, repo, slice))) found.set(r.job, r);
    return found;
  }

  async interruptUnfinished(at: string, repos?: readonly string[], runningOnly?: boolean): Promise<readonly RunRecord[]> {
    if (repos !== undefined && repos.length === 0) return [];
    return this.guard(() =>
      this.database.write(async (trx) => (await markInterrupted(trx, at, repos, runningOnly === true)).map(rows.runFromRow).sort((a, b) => a.id - b.id)),
    );
  }

  // Tasks and logs ------------------------------------------------------------

  async putTask(task: TaskRecord): Promise<void> {
    oneOf(task.state, RUN_STATES, 'state');
    const row = rows.taskToRow(task);
    return this.guard(() =>
      this.database.write(async (trx) => {
        await lockRun(trx, task.runId, this.database.kind);
        await upsertTask(trx, row);
      }),
    );
  }

  async listTasks(runId: number): Promise<readonly TaskRecord[]> {
    return this.guard(async () => {
      const found = await this.db.selectFrom('tasks').selectAll().where('run_id', '=', runId).orderBy('disk').execute();
      return found.map(rows.taskFromRow);
    });
  }

  async appendLog(runId: number, lines: readonly Omit<LogLine, 'runId' | 'seq'>[]): Promise<void> {
    for (const l of lines) oneOf(l.level, LOG_LEVELS, 'log level');
    return this.guard(() =>
      this.database.write(async (trx) => {
        await lockRun(trx, runId, this.database.kind);
        await appendLines(trx, runId, lines);
      }),
    );
  }

  async readLog(runId: number, afterSeq = 0, limit?: number): Promise<readonly LogLine[]> {
    const n = pageSize(limit, DEFAULT_LOG_PAGE, MAX_LOG_PAGE, 'log');
    return this.guard(async () => {
      const found = await this.db.selectFrom('log_lines').selectAll().where('run_id', '=', runId).where('seq', '>', afterSeq).orderBy('seq').limit(n).execute();
      return found.map(rows.logLineFromRow);
    });
  }

  // Jobs and points -----------------------------------------------------------

  async putJob(job: JobRecord): Promise<void> {
    return this.guard(() => upsertJob(this.db, job));
  }

  /** Forgets the job, the points recorded for it and its read. */
  async deleteJob(repo: string, name: string): Promise<void> {
    return this.guard(() =>
      this.database.write(async (trx) => {
        await this.database.lockExclusive(trx, 'points');
        await trx.deleteFrom('points').where('repo', '=', repo).where('job', '=', name).execute();
        await trx.deleteFrom('job_reads').where('repo', '=', repo).where('job', '=', name).execute();
        await trx.deleteFrom('jobs').where('repo', '=', repo).where('name', '=', name).execute();
      }),
    );
  }

  async listJobs(repo?: string): Promise<readonly JobRecord[]> {
    return this.guard(async () => {
      const found = await this.db
        .selectFrom('jobs')
        .selectAll()
        .$if(repo !== undefined, (q) => q.where('repo', '=', repo!))
        .orderBy('repo')
        .orderBy('name')
        .execute();
      return found.map(rows.jobFromRow);
    });
  }

  async replacePoints(repo: string, job: string, points: readonly PointRecord[]): Promise<void> {
    checkPointsOf(repo, job, points);
    return this.guard(() => this.database.write((trx) => this.writePoints(trx, repo, job, points)));
  }

  /** In a write transaction: the job's points become `points`. */
  private async writePoints(trx: CatalogDatabase['db'], repo: string, job: string, points: readonly PointRecord[]): Promise<void> {
    // Two replacements at once would each delete what the other had not yet
    // written, then both insert: a mix of the two sets, or a duplicate key.
    await this.database.lockExclusive(trx, 'points');
    await trx.deleteFrom('points').where('repo', '=', repo).where('job', '=', job).execute();
    for (const chunk of chunks(points, INSERT_CHUNK)) {
      await trx.insertInto('points').values(chunk.map(rows.pointToRow)).execute();
    }
  }

  async recordJobRead(job: JobRecord, points: readonly PointRecord[], read: JobReadRecord): Promise<void> {
    if (read.repo !== job.repo || read.job !== job.name) throw invalid(`the read of ${read.repo} ${read.job} is not of job ${job.repo} ${job.name}`);
    checkPointsOf(job.repo, job.name, points);
    return this.guard(() =>
      this.database.write(async (trx) => {
        await upsertJob(trx, job);
        await this.writePoints(trx, job.repo, job.name, points);
        await upsertJobRead(trx, read);
      }),
    );
  }

  async listJobReads(repo: string): Promise<readonly JobReadRecord[]> {
    return this.guard(() => readsOf(this.db, repo));
  }

  async listPoints(repo: string, job: string): Promise<readonly PointRecord[]> {
    return this.guard(async () => {
      const found = await this.db.selectFrom('points').selectAll().where('repo', '=', repo).where('job', '=', job).orderBy('seq').execute();
      return found.map(rows.pointFromRow);
    });
  }

  // Usage samples ---------------------------------------------------------------

  async addUsageSample(sample: UsageSample): Promise<void> {
    const at = isoInstant(sample.at, 'at');
    return this.guard(() => insertUsageSample(this.db, { ...sample, at }));
  }

  async listUsageSamples(repo: string, filter: UsageSampleFilter = {}): Promise<readonly UsageSample[]> {
    const limit = pageSize(filter.limit, DEFAULT_USAGE_SAMPLES, MAX_USAGE_SAMPLES, 'usage sample');
    const since = filter.since === undefined ? undefined : isoInstant(filter.since, 'since');
    const until = filter.until === undefined ? undefined : isoInstant(filter.until, 'until');
    return this.guard(() => usageSamplesOf(this.db, repo, since, until, limit));
  }

  async deleteUsageSamplesBefore(before: string): Promise<number> {
    const when = isoInstant(before, 'before');
    return this.guard(() => deleteUsageSamples(this.db, when));
  }

  // SureBackup reports ---------------------------------------------------------

  async recordLabReport(report: LabReportRecord): Promise<void> {
    if (report.id === '' || report.id.length > 128) throw invalid(`a report id is 1 to 128 characters (got ${JSON.stringify(report.id)})`);
    const checked = { ...report, startedAt: isoInstant(report.startedAt, 'startedAt'), endedAt: isoInstant(report.endedAt, 'endedAt') };
    return this.guard(() => this.database.write((trx) => writeLabReport(trx, checked)));
  }

  async listLabReports(filter: LabReportFilter): Promise<LabReportPage> {
    const limit = pageSize(filter.limit, DEFAULT_REPORT_PAGE, MAX_REPORT_PAGE, 'report list');
    return this.guard(() => labReportsOf(this.db, filter.repo, limit, filter.before));
  }

  async getLabReport(repo: string, id: string): Promise<LabReportRecord> {
    return this.guard(() => labReportOf(this.db, repo, id));
  }

  async latestLabResults(repo: string, job: string): Promise<readonly LabPointResult[]> {
    return this.guard(() => latestResultsOf(this.db, repo, job));
  }

  // Users, tokens, console sessions ------------------------------------------

  async addUser(user: UserRecord): Promise<void> {
    oneOf(user.role, USER_ROLES, 'role');
    return this.guard(() => accounts.insertUser(this.db, user));
  }

  async getUser(name: string): Promise<UserRecord | undefined> {
    return this.guard(() => accounts.userNamed(this.db, name));
  }

  async listUsers(): Promise<readonly UserRecord[]> {
    return this.guard(() => accounts.allUsers(this.db));
  }

  /** Deletes the user with its tokens and console sessions; LFB_ERR_USER_NOT_FOUND when there is none. */
  async deleteUser(name: string): Promise<void> {
    return this.guard(() => this.database.write((trx) => accounts.removeUser(trx, name)));
  }

  async updateUser(name: string, change: UserChange): Promise<UserRecord> {
    if (change.role !== undefined) oneOf(change.role, USER_ROLES, 'role');
    return this.guard(() => this.database.write((trx) => accounts.changeUser(trx, name, change)));
  }

  /** LFB_ERR_USER_NOT_FOUND when the token's user does not exist. */
  async addToken(token: TokenRecord): Promise<void> {
    return this.guard(() => this.database.write((trx) => accounts.insertToken(trx, token)));
  }

  async findToken(hash: string): Promise<TokenRecord | undefined> {
    return this.guard(() => accounts.tokenWithHash(this.db, hash));
  }

  async touchToken(id: string, at: string): Promise<void> {
    return this.guard(() => accounts.markTokenUsed(this.db, id, at));
  }

  async listTokens(user?: string): Promise<readonly TokenRecord[]> {
    return this.guard(() => accounts.tokensOf(this.db, user));
  }

  async deleteToken(id: string): Promise<void> {
    return this.guard(() => accounts.removeToken(this.db, id));
  }

  /** LFB_ERR_USER_NOT_FOUND when the session's user does not exist. */
  async addWebSession(s: WebSessionRecord): Promise<void> {
    return this.guard(() => this.database.write((trx) => accounts.insertWebSession(trx, s)));
  }

  /** The session as stored, expired or not: the caller compares expiresAt with its clock. */
  async findWebSession(idHash: string): Promise<WebSessionRecord | undefined> {
    return this.guard(() => accounts.webSessionWithHash(this.db, idHash));
  }

  async deleteWebSession(idHash: string): Promise<void> {
    return this.guard(() => accounts.removeWebSession(this.db, idHash));
  }

  /** Deletes sessions that expired at or before `now`; returns how many. */
  async deleteExpiredWebSessions(now: string): Promise<number> {
    const at = isoInstant(now, 'now');
    return this.guard(() => accounts.removeWebSessionsExpiredBy(this.db, at));
  }

  // Leases --------------------------------------------------------------------

  async acquireLease(name: string, holder: string, at: string, ttlMs: number): Promise<LeaseAttempt> {
    if (name === '' || holder === '') throw invalid('a lease needs a name and a holder');
    if (!Number.isInteger(ttlMs) || ttlMs < 1) throw invalid(`a lease's ttl must be a whole number of milliseconds of at least 1 (got ${ttlMs})`);
    const from = isoInstant(at, 'at');
    const until = new Date(Date.parse(from) + ttlMs).toISOString();
    return this.guard(() => this.database.write((trx) => takeLease(trx, name, holder, from, until)));
  }

  async releaseLease(name: string, holder: string, at: string): Promise<boolean> {
    const when = isoInstant(at, 'at');
    return this.guard(() => this.database.write((trx) => giveUpLease(trx, name, holder, when)));
  }

  async getLease(name: string): Promise<LeaseRecord | undefined> {
    return this.guard(() => leaseNamed(this.db, name));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.database.close();
  }
}
