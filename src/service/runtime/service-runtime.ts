import type { LeaseRecord, RunKind, RunRecord, RunTrigger } from '../../catalog/catalog.js';
import { LifeboatError } from '../../core/errors.js';
import { DEFAULT_MAX_TASKS, decide, type ScheduledJob } from '../../schedule/index.js';
import type { JobRunner, RunProgress } from '../http/deps.js';
import { Repository, loadJob } from '../../repository/index.js';
import { serverScheduledJobs } from './scheduled-jobs.js';
import { readHeartbeat, writeHeartbeat } from './scheduler-heartbeat.js';
import { DEFAULT_LEASE_TTL_MS, SchedulerLease, SchedulerLeadership, schedulerLeaseName, serverHolderId } from './scheduler-lease.js';
import { QueuedStops } from './queued-stops.js';
import type { ServiceRuntimeOptions } from './runtime-options.js';
import { RunWatchers } from './run-watchers.js';
import type { RunOptions } from './run-execution.js';
import type { BackupProgress, BackupResult } from '../../methods/backup-run.js';
import { InProcessBackupRunner, type BackupRunner } from './backup-runner.js';
import { loadSureBackupJob } from '../../app/surebackup-jobs.js';
import { interruptRunsLeft, knownRuns, splitKey } from './known-runs.js';
import { TIER_JOB } from './tier-execution.js';
import { requireCapacityTier } from '../../app/capacity-tier.js';
import { RunResults, executionFor, type Execution } from './executions.js';
import type { CopyResult } from '../../methods/copy-run.js';

export type { ServiceRuntimeOptions };

const DEFAULT_MAX_SLEEP_MS = 30_000;
/** How often a standby reads the end of runs its clients watch (they run on the leading server). */
const STANDBY_WATCH_MS = 1000;

/**
 * The scheduler's runtime: asks `decide` (src/schedule) what to do, records
 * runs in the catalog, starts them inside this process (never more disk
 * tasks than the cap), stops them when their window closes, retries and
 * chains them. Also the API's JobRunner (run now, stop, watch).
 *
 * Of several servers of the same repositories sharing one catalog, only the
 * one holding the scheduler's lease (scheduler-lease.ts) decides and runs;
 * the others stand by: a run asked of them is queued in the catalog for the
 * leader, and they take over when its lease expires.
 */
export class ServiceRuntime implements JobRunner {
  private readonly running = new Map<number, Execution>();
  /** Who watches which run, also from the queue. */
  private readonly watchers = new RunWatchers();
  /** Options of queued runs a person asked for (active full, …); a run the server queued has none. */
  private readonly options = new Map<number, RunOptions>();
  private readonly results = new RunResults();
  /**
   * Queued runs a person stopped. A start reads its run from the catalog
   * before it begins, and a read answered before the stop was written still
   * says queued: the start looks here once its read is back, so a stop that
   * was answered is never followed by the run.
   */
  private readonly queuedStops: QueuedStops;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private again = false;
  private closing = false;
  private since = 0;
  private startup = true;
  private readonly reported = new Set<string>();
  private readonly runner: BackupRunner;
  private leadership: SchedulerLeadership | undefined;
  /** The queued runs the last decision saw: a leader decides again when the catalog has another (queued through a standby). */
  private queuedSeen = new Set<number>();

  constructor(private readonly opts: ServiceRuntimeOptions) {
    this.runner = opts.runner ?? new InProcessBackupRunner(opts.service, opts.pool);
    this.queuedStops = new QueuedStops({
      catalog: opts.catalog,
      clock: opts.clock,
      leading: () => this.leading,
      leader: () => this.leader(),
      stopRunning: (id) => this.stopRunning(id),
      neverStarts: (id) => this.watchers.neverStarts(id),
    });
  }

  /** Takes the scheduler's lease if it is free (or this server's) and starts deciding; else stands by until it is. */
  async start(): Promise<void> {
    const { opts } = this;
    const lease = new SchedulerLease(
      opts.catalog,
      schedulerLeaseName(opts.repos),
      opts.holder ?? (await serverHolderId(opts.repos, opts.stateDir)),
      opts.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS,
    );
    this.leadership = new SchedulerLeadership(lease, () => opts.clock.now().getTime(), opts.logger, {
      lead: (takenFrom) => this.lead(takenFrom),
      lose: () => this.standBy(),
      renewed: () => void this.noticeQueued(),
    });
    await this.leadership.start();
  }

  /** The holder of the scheduler's lease, as the catalog says (for messages). */
  async leader(): Promise<string> {
    return (await this.opts.catalog.getLease(schedulerLeaseName(this.opts.repos)).catch(() => undefined))?.holder ?? 'another server';
  }

  /** Whether this server runs the scheduler now (it holds the lease). */
  get leading(): boolean {
    return this.leadership?.leading === true;
  }

  /** Marks what a killed server (this one before a restart, or the leader it takes over from) left running as interrupted, then decides. */
  private async lead(takenFrom: LeaseRecord | undefined): Promise<void> {
    const now = this.opts.clock.now();
    for (const r of await interruptRunsLeft(this.opts.catalog, this.opts.repos, now, takenFrom !== undefined, this.opts.logger)) {
      // Its end is known only now: it gets its journal line (and notifications) as every ended run does.
      await this.notifyEnded(r);
      this.watchers.neverStarts(r.id);
    }
    // Cron fires after the last time the previous leader renewed its lease were not run by it: they are missed runs.
    this.since = takenFrom ? Date.parse(takenFrom.renewedAt) : ((await this.readHeartbeat()) ?? now.getTime());
    this.startup = true;
    // Runs watched from the queue may have ended on the server that led before (a standby's poll of them stopped).
    await this.watchers.endEnded(this.endedElsewhere);
    this.tick();
  }

  /** Whether a run not going here has ended (on another server). */
  private readonly endedElsewhere = async (id: number): Promise<boolean> => !this.running.has(id) && (await this.opts.catalog.getRun(id)).endedAt !== null;

  /** On a standby, watched runs run on the leader: their watchers hear the end the catalog records. */
  private followFromStandby(): void {
    this.watchers.followEnds(this.endedElsewhere, () => !this.leading && !this.closing, STANDBY_WATCH_MS);
  }

  /** Lost the lease: another server decides now; what runs here stops at its next safe point (ending interrupted, retried there). */
  private standBy(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const e of this.running.values()) e.stop('shutdown');
    if (this.watchers.waitingIds().length > 0) this.followFromStandby();
  }

  /** A leader decides again when a run was queued that it has not seen (through a standby's API). */
  private async noticeQueued(): Promise<void> {
    try {
      for (const repo of this.opts.repos) {
        const { runs } = await this.opts.catalog.listRuns({ repo, states: ['queued'], limit: 100 });
        if (runs.some((r) => !this.queuedSeen.has(r.id) && !this.running.has(r.id))) return this.tick();
      }
    } catch {
      // The next renewal looks again; the scheduler's own rounds go on meanwhile.
    }
  }

  async runNow(repo: string, job: string, trigger: RunTrigger, options?: RunOptions): Promise<RunRecord> {
    // The job must exist: a typo is an error now, not a failed run later (job.json alone: showJob would scan the backup files).
    return this.queueNow(repo, job, 'backup', trigger, async () => loadJob(await Repository.open(repo), job), options);
  }

  /** A SureBackup job's run now (`surebackup job run`, the API's run-now). */
  async runSureBackupNow(repo: string, name: string, trigger: RunTrigger): Promise<RunRecord> {
    return this.queueNow(repo, name, 'surebackup', trigger, () => loadSureBackupJob(repo, name));
  }

  /** A copy job's run now (`copy run` handed over, the API's run-now). */
  async runCopyNow(repo: string, name: string, trigger: RunTrigger): Promise<RunRecord> {
    return this.queueNow(repo, name, 'copy', trigger, () => this.opts.service.copyJob(repo, name));
  }

  /** The capacity tier's run now (the API's run-now). */
  async runTierNow(repo: string, trigger: RunTrigger): Promise<RunRecord> {
    return this.queueNow(repo, TIER_JOB, 'tier', trigger, () => requireCapacityTier(repo));
  }

  private async queueNow(
    repo: string,
    job: string,
    kind: RunKind,
    trigger: RunTrigger,
    exists: () => Promise<unknown>,
    options?: RunOptions,
  ): Promise<RunRecord> {
    if (this.closing) throw new LifeboatError('LFB_ERR_SERVER_NOT_RUNNING', 'the server is stopping');
    if (!this.opts.repos.includes(repo)) throw new LifeboatError('LFB_ERR_REPO_NOT_FOUND', `this server does not serve ${repo}`);
    await exists();
    const run = await this.opts.catalog.createRun({ repo, job, kind, trigger, attempt: 1, retryOf: null, queuedAt: this.opts.clock.now().toISOString() });
    if (options) this.options.set(run.id, options);
    this.tick();
    return run;
  }

  async stop(runId: number): Promise<void> {
    if (!(await this.stopRunning(runId))) await this.queuedStops.stop(runId);
  }

  /** Stops a run going here and waits for its end; false when none with that id runs here. */
  private async stopRunning(runId: number): Promise<boolean> {
    const exec = this.running.get(runId);
    if (exec === undefined) return false;
    exec.stop('stopped');
    await exec.done;
    return true;
  }

  watch(runId: number, listener: (p: RunProgress) => void, ended?: () => void): () => void {
    const exec = this.running.get(runId);
    const unwatch = this.watchers.watch(runId, exec, listener, ended);
    if (!exec && !this.leading) this.followFromStandby();
    return unwatch;
  }

  /** The scheduler decides again at once: a new or changed schedule is not left until its next round (up to maxSleepMs). */
  jobChanged(): void {
    this.tick();
  }

  /** A running run's latest progress, if it has one. */
  progressOf(runId: number): BackupProgress | undefined {
    return this.running.get(runId)?.lastProgress;
  }

  /** What a recent run's backup returned (kept for the latest runs only). */
  resultOf(runId: number): BackupResult | undefined {
    return this.results.backup(runId);
  }

  /** What a recent copy run returned (kept for the latest runs only). */
  copyResultOf(runId: number): CopyResult | undefined {
    return this.results.copy(runId);
  }

  /** Whether a run of this server is going for the job now (its backup files are being written). */
  isRunning(repo: string, job: string): boolean {
    for (const exec of this.running.values()) if (exec.run.kind === 'backup' && exec.run.repo === repo && exec.run.job === job) return true;
    return false;
  }

  /** Runs going now. */
  runningCount(): number {
    return this.running.size;
  }

  /** Runs in progress (ids). */
  runningIds(): number[] {
    return [...this.running.keys()];
  }

  /** Stops deciding; running runs stop at their next safe point and end `interrupted` (retried at the next start). */
  async close(): Promise<void> {
    this.closing = true;
    if (this.timer) clearTimeout(this.timer);
    this.watchers.stopFollowing();
    await this.ticking;
    for (const e of this.running.values()) e.stop('shutdown');
    await Promise.allSettled([...this.running.values()].map((e) => e.done));
    if (this.leading) await this.writeHeartbeat(this.opts.clock.now().getTime());
    // Last: its runs have ended (interrupted) in the catalog before a standby takes the lease and retries them.
    await this.leadership?.stop();
  }

  /** Decides now (coalescing calls made while a decision runs). */
  tick(): void {
    if (this.closing) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    this.ticking = this.decideNow()
      .catch((err: unknown) => this.opts.logger.error('service: the scheduler failed a round', { problem: err instanceof Error ? err.message : String(err) }))
      .finally(() => {
        this.ticking = undefined;
        if (this.again) {
          this.again = false;
          this.tick();
        }
      });
  }

  private async decideNow(): Promise<void> {
    if (!this.leading) return;
    const { catalog, clock } = this.opts;
    const now = clock.now().getTime();
    const jobs = await this.jobs();
    const runs = await knownRuns(this.opts.catalog, this.opts.repos, jobs, (id) => this.running.has(id));
    this.queuedSeen = new Set(runs.filter((r) => r.state === 'queued').map((r) => r.id));
    const d = decide({
      jobs,
      runs,
      since: this.since,
      now,
      startup: this.startup,
      maxTasks: this.opts.maxTasks ?? DEFAULT_MAX_TASKS,
      ...(this.opts.timeZone ? { timeZone: this.opts.timeZone } : {}),
    });
    this.startup = false;
    this.since = now;
    for (const p of d.problems)
      this.reportOnce(`${p.job}\n${p.message}`, () => this.opts.logger.warn('service: a job cannot be scheduled', { ...splitKey(p.job), problem: p.message }));
    for (const f of d.fires)
      if (f.outcome !== 'queued') this.opts.logger.debug('service: schedule fire', { ...splitKey(f.job), outcome: f.outcome, count: f.count });
    for (const q of d.queue) {
      // The lease was lost while this round read: another server decides now.
      if (!this.leading) return;
      const { repo, job, kind } = splitKey(q.job);
      const run = await catalog.createRun({
        repo,
        job,
        ...(kind ? { kind } : {}),
        trigger: q.trigger,
        attempt: q.attempt,
        retryOf: q.retryOf,
        queuedAt: new Date(now).toISOString(),
      });
      this.opts.logger.info('service: run queued', { run: run.id, repo, job, ...(kind ? { kind } : {}), trigger: q.trigger, attempt: q.attempt });
    }
    for (const s of d.stop) {
      const e = this.running.get(s.runId);
      if (e) {
        this.opts.logger.info('service: stopping a run: its window closed', { run: s.runId });
        e.stop('window-closed');
      }
    }
    for (const id of d.start) if (!this.running.has(id) && this.leading) await this.begin(id);
    await this.writeHeartbeat(now);
    const wait = d.queue.length > 0 ? 0 : Math.min(this.opts.maxSleepMs ?? DEFAULT_MAX_SLEEP_MS, d.nextAt === null ? Infinity : Math.max(0, d.nextAt - now));
    if (this.timer) clearTimeout(this.timer);
    if (!this.closing && this.leading) {
      this.timer = setTimeout(() => this.tick(), wait);
      this.timer.unref();
    }
  }

  private async begin(id: number): Promise<void> {
    const run = await this.opts.catalog.getRun(id);
    if (run.state !== 'queued' || this.queuedStops.has(id)) {
      // It will not start: whoever waits for it hears that now (a stop in progress tells them once it is recorded).
      if (run.state !== 'queued') this.watchers.neverStarts(id);
      return;
    }
    const exec = executionFor(run, this.opts, this.runner, this.options.get(id));
    this.options.delete(id);
    this.running.set(id, exec);
    // Before the run's first await has returned: no progress is sent before its watchers are attached.
    this.watchers.started(id, exec);
    this.opts.logger.info('service: run started', { run: id, repo: run.repo, job: run.job, trigger: run.trigger });
    void exec.done
      .then(
        async (ended) => {
          this.opts.logger[ended.state === 'failed' ? 'error' : 'info']('service: run ended', {
            run: id,
            repo: ended.repo,
            job: ended.job,
            state: ended.state,
            ...(ended.errorCode ? { code: ended.errorCode } : {}),
          });
          await this.notifyEnded(ended);
        },
        (err: unknown) => this.opts.logger.error('service: recording a run failed', { run: id, problem: err instanceof Error ? err.message : String(err) }),
      )
      .finally(() => {
        this.results.keep(exec);
        this.running.delete(id);
        this.tick();
      });
  }

  /** Tells onRunEnded (the journal line, webhooks) of a run's end: a notifier that throws or rejects is logged, it never ends the server. */
  private async notifyEnded(run: RunRecord): Promise<void> {
    try {
      await this.opts.onRunEnded?.(run);
    } catch (err) {
      this.opts.logger.error('service: reporting the end of a run failed', { run: run.id, problem: err instanceof Error ? err.message : String(err) });
    }
  }

  /** Every job of every repository, backup, SureBackup and copy, as the scheduler sees it (their files are read each round). */
  private async jobs(): Promise<ScheduledJob[]> {
    return serverScheduledJobs(this.opts.repos, this.opts.schedules !== false, this.opts.logger, (key, report) => this.reportOnce(key, report));
  }

  private reportOnce(key: string, report: () => void): void {
    if (this.reported.has(key)) return;
    this.reported.add(key);
    report();
  }

  private async readHeartbeat(): Promise<number | undefined> {
    return readHeartbeat(this.opts.stateDir, this.opts.repos);
  }

  private async writeHeartbeat(at: number): Promise<void> {
    await writeHeartbeat(this.opts.stateDir, this.opts.repos, at).catch((err: unknown) =>
      this.reportOnce('heartbeat', () =>
        this.opts.logger.warn('service: cannot write the scheduler heartbeat', { stateDir: this.opts.stateDir, problem: String(err) }),
      ),
    );
  }
}
