import { formatBytes } from '../../core/units.js';
import type { CopyResult } from '../../methods/copy-run.js';
import type { RunRecord } from '../../catalog/catalog.js';
import { OneTaskExecution, type OneTaskExecutionDeps, type OneTaskOutcome } from './one-task-execution.js';

/** How long a copy waits for a backup of its job (the source's lock) or another copy (the target's) before it fails. */
export const COPY_LOCK_WAIT_MS = 10 * 60_000;

export type CopyExecutionDeps = OneTaskExecutionDeps;

/**
 * One run of a copy job inside the server (kind 'copy'): copies the job's
 * new points to the target repository and applies the target's retention
 * (runCopy). The catalog records it as it records a backup: one task, the
 * bytes copied (bytesStored; bytesRead the same: stored blocks are read as
 * they are written), the newest point it made (pointId, the target's), a log
 * line for each point made and each retention action, and the error's code
 * when it fails. Stopped, it ends at the copy's next safe point (a block
 * boundary: the half-written point is removed by the next run).
 * Progress counts blocks of the point being copied (bytesDone/bytesTotal).
 */
export class CopyExecution extends OneTaskExecution<CopyResult> {
  constructor(run: RunRecord, deps: CopyExecutionDeps) {
    super(run, deps, 'copy run', 'the point being copied is removed by the next run');
  }

  protected async perform(signal: AbortSignal): Promise<{ result: CopyResult; outcome: OneTaskOutcome }> {
    const r = await this.deps.service.runCopy(this.run.repo, this.run.job, {
      waitMs: COPY_LOCK_WAIT_MS,
      signal,
      onProgress: (p) =>
        this.progress(
          { disk: p.disk, diskCount: 1, bytesDone: p.blocksDone, bytesTotal: p.blocksTotal },
          `point ${p.index}/${p.count} (${p.sourcePointId}) disk ${p.disk + 1}: block ${p.blocksDone}/${p.blocksTotal}`,
        ),
    });
    const bytes = r.copied.reduce((n, p) => n + p.bytesCopied, 0);
    for (const n of r.cleanedUp) await this.log('info', `removed ${n}, left by an interrupted copy`);
    for (const p of r.copied)
      await this.log(
        'info',
        `${p.kind} ${p.pointId} ← point ${p.sourcePointId}: ${p.blocksCopied} blocks copied (${formatBytes(p.bytesCopied)}), ${p.blocksUnchanged} unchanged, ${p.blocksZero} zero`,
      );
    for (const a of r.retention)
      await this.log('info', `retention on the target: ${a.skipped !== undefined ? `postponed (${a.skipped}) — ` : `${a.action.type} — `}${a.action.reason}`);
    const newest = r.copied[r.copied.length - 1];
    return {
      result: r,
      outcome: {
        bytes,
        pointId: newest?.pointId,
        summary:
          r.copied.length === 0 ? `succeeded: up to date (${r.target})` : `succeeded: ${r.copied.length} point(s) copied to ${r.target}, ${formatBytes(bytes)}`,
      },
    };
  }
}
