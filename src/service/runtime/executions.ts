import type { RunRecord } from '../../catalog/catalog.js';
import { LifeboatError } from '../../core/errors.js';
import { AUTOMATIC_TRIGGERS } from '../../schedule/index.js';
import type { BackupResult } from '../../methods/backup-run.js';
import type { CopyResult } from '../../methods/copy-run.js';
import type { TierReport } from '../../app/capacity-tier.js';
import type { BackupRunner } from './backup-runner.js';
import { CopyExecution } from './copy-execution.js';
import { RunExecution, type RunOptions } from './run-execution.js';
import { FailedExecution, SureBackupExecution } from './surebackup-execution.js';
import { TierExecution } from './tier-execution.js';
import type { ServiceRuntimeOptions } from './runtime-options.js';

/** A backup run, a SureBackup job's run, a copy job's run or a capacity tier's run, as the runtime drives it. */
export type Execution = Pick<RunExecution, 'run' | 'done' | 'stop' | 'watch' | 'lastProgress'> & {
  readonly result: BackupResult | CopyResult | TierReport | undefined;
};

/** How long a backup run the server started by itself (schedule, retry, chain, missed) waits for its job's lock before it fails (and is retried). */
export const SCHEDULED_LOCK_WAIT_MS = 10 * 60_000;

/** How many runs' results are kept for a CLI that handed its run over and asks how it went. */
const MAX_RESULTS_KEPT = 64;

/** The run of its kind, started: a backup on `runner`, a SureBackup job in the repository's lab (or a run that fails saying why not), a copy, a capacity tier. */
export function executionFor(run: RunRecord, opts: ServiceRuntimeOptions, runner: BackupRunner, options: RunOptions | undefined): Execution {
  switch (run.kind) {
    case 'surebackup': {
      const recovery = opts.recovery?.(run.repo);
      if (recovery) return new SureBackupExecution(run, { ...opts, recovery });
      return new FailedExecution(
        run,
        opts,
        new LifeboatError('LFB_ERR_SERVER_NOT_RUNNING', `this server runs no instant sessions for ${run.repo}: SureBackup jobs cannot boot`),
      );
    }
    case 'copy':
      return new CopyExecution(run, opts);
    case 'tier':
      return new TierExecution(run, opts);
    case 'backup':
      // A run the server started by itself waits for its job's lock (a copy or a tier run working on the job's files)
      // rather than failing; a person's run says at once that the job is busy, unless they asked to wait.
      return new RunExecution(
        run,
        { ...opts, runner, beforeEnd: opts.beforeRunEnds },
        AUTOMATIC_TRIGGERS.has(run.trigger) && options?.waitMs === undefined ? { ...options, waitMs: SCHEDULED_LOCK_WAIT_MS } : options,
      );
    default:
      // A kind a newer server wrote to a shared catalog: this one cannot run it, and says so in the run.
      return new FailedExecution(run, opts, new LifeboatError('LFB_ERR_INTERNAL', `this server cannot run runs of kind "${String(run.kind)}"`));
  }
}

/** What the latest backup and copy runs returned, for a CLI that handed its run over (`lifeboat backup`, `copy run`) and asks right after the end. */
export class RunResults {
  private readonly results = new Map<number, BackupResult | CopyResult>();

  /** Keeps what an ended run returned (a capacity tier's report is in its log: no command hands a tier run over). */
  keep(exec: Execution): void {
    if (exec.result === undefined || exec.run.kind === 'tier') return;
    this.results.set(exec.run.id, exec.result as BackupResult | CopyResult);
    if (this.results.size > MAX_RESULTS_KEPT) this.results.delete(this.results.keys().next().value!);
  }

  backup(runId: number): BackupResult | undefined {
    const r = this.results.get(runId);
    return r && !('copied' in r) ? r : undefined;
  }

  copy(runId: number): CopyResult | undefined {
    const r = this.results.get(runId);
    return r && 'copied' in r ? r : undefined;
  }
}
