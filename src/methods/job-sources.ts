import type { ChainFile } from '../repository/job-state.js';
import { closeAll } from './close-all.js';
import type { JobDefinition } from '../repository/job.js';
import type { VmConfig } from '../format/root.js';
import { isQmpUri, openDiskSource, openRunningDrive, startDaemonEarly, type ChangeTracking, type OpenedSource, type StorageDaemon } from '../source/index.js';

/**
 * Opens every disk of a job for one run. With --cbt, the previous point's
 * record says which bitmap tracks writes since it; `readAll` (a repair run)
 * turns CBT reading off, since blocks to repair need not be dirty.
 */
export async function openJobSources(
  job: JobDefinition,
  pointId: string,
  previous: ChainFile | undefined,
  opts: { readAll?: boolean; early?: EarlyDaemons } = {},
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
          : await openDiskSource(spec, {
              format: job.diskFormat,
              cbt: job.cbt ? { jobId: job.jobId, pointId, previous: prev } : undefined,
              daemon: opts.early?.take(d),
            }),
      );
    }
    return opened;
  } catch (err) {
    // Every source opened so far is closed before the run's lock goes, even when one close fails.
    await closeAll(opened.map((o) => o.source.close())).catch(() => undefined);
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

/**
 * The storage daemons of a CBT job's qcow2 disks, started as soon as the run
 * holds the job's lock: each comes up while the run scans its files, and goes
 * to its disk's opening (openJobSources), or is stopped (stop) if the run
 * never gets there.
 */
export class EarlyDaemons {
  private constructor(private readonly byDisk: Map<number, Promise<StorageDaemon | undefined>>) {}

  static start(job: JobDefinition): EarlyDaemons {
    const byDisk = new Map<number, Promise<StorageDaemon | undefined>>();
    // A reverse-incremental run opens its sources itself (reverse-run.ts): nothing to start for it.
    if (job.cbt === true && job.method !== 'reverse') job.disks.forEach((spec, d) => byDisk.set(d, startDaemonEarly(spec, job.diskFormat)));
    return new EarlyDaemons(byDisk);
  }

  /** Disk `d`'s daemon, now the caller's. */
  take(d: number): Promise<StorageDaemon | undefined> | undefined {
    const daemon = this.byDisk.get(d);
    this.byDisk.delete(d);
    return daemon;
  }

  /** Stops the daemons nobody took (they hold their images' write locks); never fails, so a run's cleanup goes on. */
  async stop(): Promise<void> {
    const left = [...this.byDisk.values()];
    this.byDisk.clear();
    await Promise.allSettled(left.map((p) => p.then((daemon) => daemon?.stop())));
  }
}
