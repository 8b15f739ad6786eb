import type { ChainFile } from '../repository/job-state.js';
import type { JobDefinition } from '../repository/job.js';
import { openDiskSource, type ChangeTracking, type OpenedSource } from '../source/index.js';

/**
 * Opens every disk of a job for one run. With --cbt, the previous point's
 * record says which bitmap tracks writes since it; `readAll` (a repair run)
 * turns CBT reading off, since blocks to repair need not be dirty.
 */
export async function openJobSources(job: JobDefinition, pointId: string, previous: ChainFile | undefined, opts: { readAll?: boolean } = {}): Promise<OpenedSource[]> {
  const opened: OpenedSource[] = [];
  try {
    for (let d = 0; d < job.disks.length; d++) {
      const before: ChangeTracking | undefined = previous?.root.meta.changes?.[d];
      const prev = previous === undefined ? undefined : opts.readAll ? { method: 'hash' as const } : (before ?? { method: 'hash' as const });
      opened.push(await openDiskSource(job.disks[d]!, { format: job.diskFormat, cbt: job.cbt ? { jobId: job.jobId, pointId, previous: prev } : undefined }));
    }
    return opened;
  } catch (err) {
    await Promise.all(opened.map((o) => o.source.close()));
    throw err;
  }
}

/** What a point records of its disks' change tracking. */
export function trackingOf(opened: readonly OpenedSource[]): ChangeTracking[] {
  return opened.map((o) => o.tracking);
}
