import type { Catalog, LogLine, RunRecord, RunState, RunUpdate } from '../../catalog/catalog.js';
import type { Clock } from '../../core/clock.js';
import { LifeboatError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { BackupProgress, BackupResult } from '../../methods/backup-run.js';
import { join } from 'node:path';
import { JOB_LOCK, Repository, loadJob } from '../../repository/index.js';
import { lockHolder } from '../../storage/index.js';
import type { RunProgress } from '../http/deps.js';
import type { BackupOutcome, BackupRunner } from './backup-runner.js';

/** Why a running run was told to stop: it ends `stopped` (a person, a closing window) or `interrupted` (the server stops). */
export type StopReason = 'stopped' | 'window-closed' | 'shutdown';

/** How a run told to stop ends. */
export const STATE_FOR: Record<StopReason, RunState> = { stopped: 'stopped', 'window-closed': 'stopped', shutdown: 'interrupted' };

/** Appends a line to a run's log; a catalog that fails is logged, never the run's failure. */
export async function appendRunLog(
  deps: { readonly catalog: Catalog; readonly clock: Clock; readonly logger: Logger },
  runId: number,
  level: LogLine['level'],
  message: string,
): Promise<void> {
  await deps.catalog.appendLog(runId, [{ at: deps.clock.now().toISOString(), level, message }]).catch((err: unknown) => {
    deps.logger.error('service: could not append to a run log', { run: runId, problem: err instanceof Error ? err.message : String(err) });
  });
}

/** Why a run stopped, in its log and error message. */
export const STOP_WORDS: Record<StopReason, string> = {
  stopped: 'a person stopped it',
  'window-closed': 'its window closed',
  shutdown: 'the server is stopping',
};

/** A progress line in the run's log at most this often. */
export const LOG_PROGRESS_EVERY_MS = 10_000;

/**
 * One run of a job inside the server: recorded in the catalog from start to
 * end (tasks per disk, log lines, bytes, steps, the point and how its changes
 * were found), stoppable at the backup's next safe point.
 */
/** How a run backs up, when a person asked for more than the job's own settings. */
export interface RunOptions {
  readonly activeFull?: boolean | undefined;
  readonly acceptSourceChange?: boolean | undefined;
  readonly waitMs?: number | undefined;
}

export class RunExecution {
  private readonly controller = new AbortController();
  /** The latest progress, for those who poll (the CLI following a handed-off run). */
  lastProgress: BackupProgress | undefined;
  /** What the backup returned, when it succeeded. */
  result: BackupResult | undefined;
  private stopReason: StopReason | undefined;
  private readonly listeners = new Set<(p: RunProgress) => void>();
  private lastLogged = 0;
  /** Bytes of each disk gone through so far. */
  private readonly diskDone: number[] = [];
  readonly done: Promise<RunRecord>;

  constructor(
    readonly run: RunRecord,
    private readonly deps: {
      catalog: Catalog;
      runner: BackupRunner;
      clock: Clock;
      logger: Logger;
      /**
       * Called once the backup has ended (its end time taken) and before the
       * run is recorded as ended: the server reads the job's new files into
       * its catalog copy here, while the job still counts as being written,
       * so no listing waits for that read and none sees an ended run beside
       * the job's old points. A failure is logged; the run ends all the same.
       */
      beforeEnd?: ((repo: string, job: string) => Promise<void>) | undefined;
    },
    private readonly options: RunOptions = {},
  ) {
    this.done = this.execute();
  }

  get id(): number {
    return this.run.id;
  }

  stop(reason: StopReason): void {
    this.stopReason ??= reason;
    this.controller.abort(new LifeboatError('LFB_ERR_INTERRUPTED', STOP_WORDS[reason], { details: { reason } }));
  }

  watch(listener: (p: RunProgress) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private now(): string {
    return this.deps.clock.now().toISOString();
  }

  private log(level: LogLine['level'], message: string): Promise<void> {
    return appendRunLog(this.deps, this.run.id, level, message);
  }

  /** A run that will wait for its job's lock says so in its log, and who holds it: otherwise it would only look slow. */
  private async noteLockWait(): Promise<void> {
    const waitMs = this.options.waitMs ?? 0;
    if (waitMs === 0) return;
    try {
      const repo = await Repository.open(this.run.repo);
      const holder = await lockHolder(repo.storage, join(repo.jobDir(this.run.job), JOB_LOCK));
      if (holder === undefined) return;
      await this.log(
        'info',
        `job ${this.run.job} is busy (process ${holder.pid} on ${holder.host} holds its lock since ${holder.since}: a copy, a capacity tier run or a backup): the run waits for it, up to ${Math.round(waitMs / 60_000)} min`,
      );
    } catch {
      // Only a message: the backup itself says what is wrong with the repository or the job.
    }
  }

  private async execute(): Promise<RunRecord> {
    const { catalog, runner } = this.deps;
    const { repo, job } = this.run;
    const startedAt = this.now();
    // Only a run still queued starts: a stop through another server sharing the catalog may have come first.
    const marked = await catalog.updateRun(this.run.id, { state: 'running', startedAt }, 'queued');
    if (marked.state !== 'running') return marked;
    const started = this.log(
      'info',
      `run ${this.run.id} of ${job} started (${this.run.trigger}${this.run.attempt > 1 ? `, attempt ${this.run.attempt}` : ''})`,
    );
    await this.noteLockWait();
    // The backup starts at once; its tasks are written while it opens its sources.
    const backup = runner
      .backup(repo, job, {
        signal: this.controller.signal,
        onProgress: (p) => this.progress(p),
        activeFull: this.options.activeFull,
        acceptSourceChange: this.options.acceptSourceChange,
        waitMs: this.options.waitMs,
        runId: this.run.id,
        note: (level, message) => void this.log(level, message),
      })
      .then(
        (outcome): { outcome: BackupOutcome } | { error: unknown } => ({ outcome }),
        (error: unknown) => ({ error }),
      );
    await started;
    let disks: readonly string[] = [];
    try {
      // job.json alone: the disks name the run's tasks (the backup reads it again under the job lock).
      disks = (await loadJob(await Repository.open(repo), job)).disks;
    } catch {
      // The run itself reports a missing job with its code.
    }
    const diskName = (i: number): string => disks[i]?.split('/').pop() ?? `disk${i}`;
    for (let i = 0; i < disks.length; i++)
      await catalog.putTask({ runId: this.run.id, disk: i, diskName: diskName(i), state: 'running', startedAt, endedAt: null, bytesRead: 0, bytesStored: 0 });
    const ended = await backup;
    const endedAt = this.now();
    let change: RunUpdate & { state: RunState };
    if ('outcome' in ended) {
      const { result, changes: found } = ended.outcome;
      this.result = result;
      const state: RunState = found.fellBack ? 'warning' : 'succeeded';
      change = {
        state,
        endedAt,
        bytesRead: result.bytesRead,
        bytesStored: result.bytesStored,
        steps: result.steps,
        pointId: result.pointId,
        changeMethod: found.method,
        changeReason: found.reason,
      };
      await this.log(
        state === 'warning' ? 'warn' : 'info',
        `${state}: point ${result.pointId} (${result.kind}, ${result.file}); ${result.bytesRead} bytes read, ${result.bytesStored} stored; changes found by ${found.method ?? 'unknown'}${found.reason ? ` (${found.reason})` : ''}`,
      );
    } else {
      const { error } = ended;
      const err = error instanceof LifeboatError ? error : new LifeboatError('LFB_ERR_INTERNAL', error instanceof Error ? error.message : String(error));
      const state: RunState = err.code === 'LFB_ERR_INTERRUPTED' && this.stopReason ? STATE_FOR[this.stopReason] : 'failed';
      change = { state, endedAt, errorCode: err.code, errorMessage: err.message };
      await this.log(state === 'failed' ? 'error' : 'warn', `${state}: ${err.message} [${err.code}]`);
    }
    for (let i = 0; i < disks.length; i++)
      await catalog.putTask({
        runId: this.run.id,
        disk: i,
        diskName: diskName(i),
        state: change.state,
        startedAt,
        endedAt,
        // Per disk the backup reports how far it got; what was stored is known for the run as a whole.
        bytesRead: this.diskDone[i] ?? 0,
        bytesStored: disks.length === 1 ? (change.bytesStored ?? 0) : 0,
      });
    if (this.deps.beforeEnd)
      await this.deps.beforeEnd(repo, job).catch((err: unknown) =>
        this.deps.logger.warn('service: refreshing the catalog after a run failed', {
          run: this.run.id,
          problem: err instanceof Error ? err.message : String(err),
        }),
      );
    return catalog.updateRun(this.run.id, change);
  }

  private progress(p: BackupProgress): void {
    this.diskDone[p.disk] = p.bytesDone;
    this.lastProgress = p;
    for (const l of this.listeners) l(p);
    const now = this.deps.clock.now().getTime();
    if (now - this.lastLogged >= LOG_PROGRESS_EVERY_MS) {
      this.lastLogged = now;
      const pct = p.bytesTotal > 0 ? Math.floor((p.bytesDone / p.bytesTotal) * 100) : 100;
      void this.log('debug', `disk ${p.disk + 1} of ${p.diskCount}: ${pct}% (${p.bytesDone} of ${p.bytesTotal} bytes)`);
    }
  }
}
