import type { ChainFile } from '../repository/job-state.js';
import type { JobDefinition } from '../repository/job.js';
import type { VmConfig } from '../format/root.js';
import { isQmpUri, openDiskSource, openRunningDrive, type ChangeTracking, type OpenedSource } from '../source/index.js';

/**
 * Opens every disk of a job for one run. With --cbt, the previous point's
 * record says which bitmap tracks writes since it; `readAll` (a repair run)
 * turns CBT reading off, since blocks to repair need not be dirty.
 */
export async function openJobSources(
  job: JobDefinition,
  pointId: string,
  previous: ChainFile | undefined,
  opts: { readAll?: boolean } = {},
): Promise<OpenedSource[]> {
  const opened: OpenedSource[] = [];
  try {
    for (let d = 0; d < job.disks.length; d++) {
      const before: ChangeTracking | undefined = previous?.root.meta.changes?.[d];
      const prev = previous === undefined ? undefined : opts.readAll ? { method: 'hash' as const } : (before ?? { method: 'hash' as const });
      const spec = job.disks[d]!;
      opened.push(
        isQmpUri(spec)
          ? await openRunningDrive(spec, { jobId: job.jobId, pointId, previous: prev, cbt: job.cbt === true })
          : await openDiskSource(spec, { format: job.diskFormat, cbt: job.cbt ? { jobId: job.jobId, pointId, previous: prev } : undefined }),
      );
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

/** The VM configuration the user gave, completed with what a running VM's monitor tells. */
export function givenVm(job: JobDefinition, opened: readonly OpenedSource[]): Partial<VmConfig> | null {
  const facts = opened.find((o) => o.facts)?.facts;
  return facts ? { vcpus: facts.vcpus, memoryMiB: facts.memoryMiB, ...(job.vm ?? {}) } : job.vm;
}
