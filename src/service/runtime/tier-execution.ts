import { formatBytes } from '../../core/units.js';
import type { RunRecord } from '../../catalog/catalog.js';
import { runCapacityTier, type TierReport } from '../../app/capacity-tier.js';
import { OneTaskExecution, type OneTaskExecutionDeps, type OneTaskOutcome } from './one-task-execution.js';

/** The job name of a repository's capacity tier runs in the catalog (a repository has one tier). */
export const TIER_JOB = 'capacity-tier';
/** How long the tier's run waits for a backup of a job (its lock) before it fails. */
const TIER_LOCK_WAIT_MS = 10 * 60_000;

/**
 * One run of a repository's capacity tier inside the server (kind 'tier',
 * job TIER_JOB): copies and moves backup files to the capacity extent as its
 * setting says (methods/tier-run.ts), a log line per file. Stopped, it ends at
 * the next chunk: a copy not yet committed leaves nothing on the extent, and a
 * local file goes only after its copy was checked.
 */
export class TierExecution extends OneTaskExecution<TierReport> {
  constructor(run: RunRecord, deps: OneTaskExecutionDeps) {
    super(run, deps, 'capacity tier run', 'a file being copied is copied again by the next run');
  }

  protected async perform(signal: AbortSignal): Promise<{ result: TierReport; outcome: OneTaskOutcome }> {
    const r = await runCapacityTier(this.run.repo, this.deps.clock, {
      waitMs: TIER_LOCK_WAIT_MS,
      signal,
      onProgress: (p) =>
        this.progress(
          { disk: 0, diskCount: 1, bytesDone: p.bytesDone, bytesTotal: p.bytesTotal },
          `${p.job} ${p.file}: ${p.step === 'copy' ? 'copying' : 'checking the copy'} ${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)}`,
        ),
      onMismatch: (job, file) => this.log('warn', `${job}: the capacity tier's copy of ${file} no longer matched its record; copied again`),
      onJob: async (job, copied, freed) => {
        for (const f of copied) await this.log('info', `${job}: ${f.file} copied to the capacity tier (${formatBytes(f.bytes)}), read back and checked`);
        for (const f of freed) await this.log('info', `${job}: ${f.file} moved (${formatBytes(f.bytes)} freed on the performance tier)`);
      },
    });
    return {
      result: r,
      outcome: {
        bytes: r.bytesCopied,
        summary:
          r.copied.length + r.freed.length === 0
            ? 'succeeded: nothing to copy or move'
            : `succeeded: ${r.copied.length} file(s) copied (${formatBytes(r.bytesCopied)}), ${r.freed.length} moved (${formatBytes(r.bytesFreed)} freed)`,
      },
    };
  }
}
