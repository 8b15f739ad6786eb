import type { LifeboatService } from '../../app/service.js';
import { runSureBackupJob } from '../../app/surebackup-job-run.js';
import { loadSureBackupJob } from '../../app/surebackup-jobs.js';
import type { Catalog, LogLine, RunRecord, RunState, RunUpdate } from '../../catalog/catalog.js';
import type { Clock } from '../../core/clock.js';
import { LifeboatError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { InstantRecovery } from '../../recovery/index.js';
import type { RunProgress } from '../http/deps.js';
import { recordRunReport } from '../lab-reports.js';
import { STATE_FOR, STOP_WORDS, type StopReason } from './run-execution.js';

export interface SureBackupExecutionDeps {
  readonly catalog: Catalog;
  readonly service: LifeboatService;
  readonly clock: Clock;
  readonly logger: Logger;
  /** The repository's instant sessions, where the lab's VMs run. */
  readonly recovery: InstantRecovery;
}

/**
 * One run of a SureBackup job inside the server: picks each VM's point
 * (`--every-point`: the oldest untested), boots the group in a lab of
 * instant sessions, tests and verifies it, records the report in the catalog
 * linked to the run, and ends succeeded (every test passed), failed
 * (LFB_ERR_SUREBACKUP_FAILED) or stopped; the lab is removed in every outcome.
 */
export class SureBackupExecution {
  private readonly controller = new AbortController();
  private stopReason: StopReason | undefined;
  /** Backup runs have progress and a result for a following CLI; a lab run has its report (`reportOf`). */
  readonly lastProgress = undefined;
  readonly result = undefined;
  private logging: Promise<void> = Promise.resolve();
  readonly done: Promise<RunRecord>;

  constructor(
    readonly run: RunRecord,
    private readonly deps: SureBackupExecutionDeps,
  ) {
    this.done = this.execute();
  }

  stop(reason: StopReason): void {
    this.stopReason ??= reason;
    this.controller.abort(reason);
  }

  /** A lab run sends no byte progress: its steps are in its log. */
  watch(_listener: (p: RunProgress) => void): () => void {
    return () => undefined;
  }

  private now(): string {
    return this.deps.clock.now().toISOString();
  }

  /** Lines are appended in order, the lab's progress lines too (they are not awaited where they are made). */
  private log(level: LogLine['level'], message: string): Promise<void> {
    const at = this.now();
    this.logging = this.logging.then(() =>
      this.deps.catalog.appendLog(this.run.id, [{ at, level, message }]).then(
        () => undefined,
        (err: unknown) => {
          this.deps.logger.error('service: could not append to a run log', { run: this.run.id, problem: err instanceof Error ? err.message : String(err) });
        },
      ),
    );
    return this.logging;
  }

  private async execute(): Promise<RunRecord> {
    const { catalog } = this.deps;
    const { repo, job: name } = this.run;
    const startedAt = this.now();
    // Only a run still queued starts: a stop through another server sharing the catalog may have come first.
    const marked = await catalog.updateRun(this.run.id, { state: 'running', startedAt }, 'queued');
    if (marked.state !== 'running') return marked;
    await this.log(
      'info',
      `SureBackup run ${this.run.id} of ${name} started (${this.run.trigger}${this.run.attempt > 1 ? `, attempt ${this.run.attempt}` : ''})`,
    );
    let change: RunUpdate & { state: RunState };
    let vms: { job: string; point: string }[] = [];
    try {
      const job = await loadSureBackupJob(repo, name);
      const report = await runSureBackupJob({
        service: this.deps.service,
        recovery: this.deps.recovery,
        repo,
        job,
        tested: async (j) => new Set((await catalog.latestLabResults(repo, j)).map((r) => r.point)),
        onPlanned: async (planned) => {
          vms = [...planned];
          // A task for each VM: the run takes a task of the cap for each VM it boots.
          for (const [i, v] of vms.entries())
            await catalog.putTask({
              runId: this.run.id,
              disk: i,
              diskName: `${v.job}@${v.point}`,
              state: 'running',
              startedAt,
              endedAt: null,
              bytesRead: 0,
              bytesStored: 0,
            });
        },
        onProgress: (line) => void this.log('info', line),
        signal: this.controller.signal,
        clock: this.deps.clock,
      });
      await recordRunReport(catalog, repo, report, this.run.id);
      const bad = report.vms.filter((v) => !v.booted || v.tests.some((t) => !t.ok));
      for (const v of report.vms)
        await this.log(
          v.booted && v.tests.every((t) => t.ok) ? 'info' : 'error',
          `${v.job} @ ${v.point}: ${v.booted ? `booted in ${v.seconds} s` : 'did not boot'}; ${v.tests.map((t) => `${t.name} ${t.ok ? 'ok' : 'FAILED'}`).join(', ')}`,
        );
      change = report.ok
        ? { state: 'succeeded', endedAt: this.now(), reportId: report.id }
        : {
            state: 'failed',
            endedAt: this.now(),
            reportId: report.id,
            errorCode: 'LFB_ERR_SUREBACKUP_FAILED',
            errorMessage: `SureBackup found failed tests for ${bad.map((v) => `${v.job}@${v.point}`).join(', ')}; report ${report.id}`,
          };
      await this.log(report.ok ? 'info' : 'error', report.ok ? `succeeded: every test passed (report ${report.id})` : `failed: ${change.errorMessage}`);
    } catch (error) {
      const err = error instanceof LifeboatError ? error : new LifeboatError('LFB_ERR_INTERNAL', error instanceof Error ? error.message : String(error));
      const stopped = this.stopReason !== undefined && (err.code === 'LFB_ERR_INTERRUPTED' || this.controller.signal.aborted);
      const state: RunState = stopped ? STATE_FOR[this.stopReason!] : 'failed';
      const message = stopped ? `${STOP_WORDS[this.stopReason!]}; the lab was removed` : err.message;
      change = { state, endedAt: this.now(), errorCode: stopped ? 'LFB_ERR_INTERRUPTED' : err.code, errorMessage: message };
      await this.log(state === 'failed' ? 'error' : 'warn', `${state}: ${message} [${change.errorCode}]`);
    }
    for (const [i, v] of vms.entries())
      await catalog.putTask({
        runId: this.run.id,
        disk: i,
        diskName: `${v.job}@${v.point}`,
        state: change.state,
        startedAt,
        endedAt: change.endedAt ?? this.now(),
        bytesRead: 0,
        bytesStored: 0,
      });
    return catalog.updateRun(this.run.id, change);
  }
}

/** A run that cannot start (no sessions to boot in): ends failed at once with its reason in its log. */
export class FailedExecution {
  readonly lastProgress = undefined;
  readonly result = undefined;
  readonly done: Promise<RunRecord>;

  constructor(
    readonly run: RunRecord,
    deps: { catalog: Catalog; clock: Clock },
    err: LifeboatError,
  ) {
    const at = deps.clock.now().toISOString();
    this.done = deps.catalog
      .appendLog(run.id, [{ at, level: 'error', message: `failed: ${err.message} [${err.code}]` }])
      .then(() => deps.catalog.updateRun(run.id, { state: 'failed', startedAt: at, endedAt: at, errorCode: err.code, errorMessage: err.message }));
  }

  stop(_reason: StopReason): void {}

  watch(_listener: (p: RunProgress) => void): () => void {
    return () => undefined;
  }
}
