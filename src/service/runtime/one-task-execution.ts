import type { LifeboatService } from '../../app/service.js';
import type { Catalog, LogLine, RunRecord, RunState, RunUpdate } from '../../catalog/catalog.js';
import type { Clock } from '../../core/clock.js';
import { LifeboatError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { RunProgress } from '../http/deps.js';
import { LOG_PROGRESS_EVERY_MS, STATE_FOR, STOP_WORDS, appendRunLog, type StopReason } from './run-execution.js';

export interface OneTaskExecutionDeps {
  readonly catalog: Catalog;
  readonly service: LifeboatService;
  readonly clock: Clock;
  readonly logger: Logger;
}

/** What a run's work did: its bytes and point for the catalog, and its last log line. */
export interface OneTaskOutcome {
  readonly bytes: number;
  readonly pointId?: string | undefined;
  readonly summary: string;
}

/**
 * A run of the server that is one task over stored data, not a source (a copy
 * job's run, the capacity tier's run): recorded in the catalog as a backup is
 * (one task, bytes, log lines, the error's code when it fails), stopped at the
 * work's next safe point through its AbortSignal. A subclass names the run in
 * its log, does the work, and says what a stop leaves behind.
 */
export abstract class OneTaskExecution<Result> {
  protected readonly controller = new AbortController();
  private stopReason: StopReason | undefined;
  readonly lastProgress = undefined;
  /** What the work returned, when it succeeded (for a CLI that handed its run over). */
  result: Result | undefined;
  private readonly listeners = new Set<(p: RunProgress) => void>();
  private lastLogged = 0;
  readonly done: Promise<RunRecord>;

  constructor(
    readonly run: RunRecord,
    protected readonly deps: OneTaskExecutionDeps,
    /** How the log names this kind of run ("copy run", "capacity tier run"). */
    private readonly what: string,
    /** What a stop leaves behind, said after why it stopped. */
    private readonly afterStop: string,
  ) {
    // After the subclass's fields are set: the work starts at the next turn.
    this.done = Promise.resolve().then(() => this.execute());
  }

  stop(reason: StopReason): void {
    this.stopReason ??= reason;
    this.controller.abort(new LifeboatError('LFB_ERR_INTERRUPTED', STOP_WORDS[reason], { details: { reason } }));
  }

  watch(listener: (p: RunProgress) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  protected now(): string {
    return this.deps.clock.now().toISOString();
  }

  protected log(level: LogLine['level'], message: string): Promise<void> {
    return appendRunLog(this.deps, this.run.id, level, message);
  }

  /** Tells the watchers, and the run's log at most every 10 s. */
  protected progress(p: RunProgress, line: string): void {
    for (const l of this.listeners) l(p);
    const t = this.deps.clock.now().getTime();
    if (t - this.lastLogged < LOG_PROGRESS_EVERY_MS) return;
    this.lastLogged = t;
    void this.log('info', line);
  }

  /** The work; it logs what it did and returns its outcome, or throws. */
  protected abstract perform(signal: AbortSignal): Promise<{ result: Result; outcome: OneTaskOutcome }>;

  private async execute(): Promise<RunRecord> {
    const { catalog } = this.deps;
    const startedAt = this.now();
    // Only a run still queued starts: a stop through another server sharing the catalog may have come first.
    const marked = await catalog.updateRun(this.run.id, { state: 'running', startedAt }, 'queued');
    if (marked.state !== 'running') return marked;
    await this.log(
      'info',
      `${this.what} ${this.run.id} of ${this.run.job} started (${this.run.trigger}${this.run.attempt > 1 ? `, attempt ${this.run.attempt}` : ''})`,
    );
    const task = { runId: this.run.id, disk: 0, diskName: this.run.job, startedAt, bytesRead: 0, bytesStored: 0 };
    await catalog.putTask({ ...task, state: 'running', endedAt: null });
    let change: RunUpdate & { state: RunState };
    try {
      const { result, outcome } = await this.perform(this.controller.signal);
      this.result = result;
      await this.log('info', outcome.summary);
      change = {
        state: 'succeeded',
        endedAt: this.now(),
        bytesRead: outcome.bytes,
        bytesStored: outcome.bytes,
        ...(outcome.pointId !== undefined ? { pointId: outcome.pointId } : {}),
      };
    } catch (error) {
      const err = error instanceof LifeboatError ? error : new LifeboatError('LFB_ERR_INTERNAL', error instanceof Error ? error.message : String(error));
      const stopped = this.stopReason !== undefined && (err.code === 'LFB_ERR_INTERRUPTED' || this.controller.signal.aborted);
      const state: RunState = stopped ? STATE_FOR[this.stopReason!] : 'failed';
      const message = stopped ? `${STOP_WORDS[this.stopReason!]}; ${this.afterStop}` : err.message;
      change = { state, endedAt: this.now(), errorCode: stopped ? 'LFB_ERR_INTERRUPTED' : err.code, errorMessage: message };
      await this.log(state === 'failed' ? 'error' : 'warn', `${state}: ${message} [${change.errorCode}]`);
    }
    await catalog.putTask({
      ...task,
      state: change.state,
      endedAt: change.endedAt ?? this.now(),
      bytesRead: change.bytesRead ?? 0,
      bytesStored: change.bytesStored ?? 0,
    });
    return catalog.updateRun(this.run.id, change);
  }
}
