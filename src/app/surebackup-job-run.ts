import { join } from 'node:path';
import type { Clock } from '../core/clock.js';
import { choosePoints } from '../lab/every-point.js';
import { newLabId } from '../lab/lab-plan.js';
import { reportIdOf, runSureBackup, type SureBackupResult } from '../lab/surebackup.js';
import type { LabTestResult, LabVmSpec } from '../lab/types.js';
import type { InstantRecovery } from '../recovery/index.js';
import { inProcessLabSessions, labStateDir } from './lab-sessions.js';
import type { LifeboatService } from './service.js';
import { sureBackupGroup, sureBackupVms, type SureBackupJob } from './surebackup-jobs.js';

export interface SureBackupJobRun {
  readonly service: LifeboatService;
  /** The server's instant sessions of the repository: the lab's VMs are its sessions. */
  readonly recovery: InstantRecovery;
  readonly repo: string;
  readonly job: SureBackupJob;
  /** The points of a job with a SureBackup result (the catalog's latestLabResults), for --every-point. */
  readonly tested: (job: string) => Promise<ReadonlySet<string>>;
  /** The VMs and their points, once chosen, before the lab is made. */
  readonly onPlanned?: (vms: readonly { job: string; point: string }[]) => Promise<void>;
  readonly onProgress: (line: string) => void;
  readonly signal: AbortSignal;
  readonly clock: Clock;
}

/**
 * One run of a SureBackup job inside the server: each VM's point (with
 * `everyPoint`, the oldest of its job without a result; the latest again once
 * every point has one), then the lab as `surebackup run` makes it, with the
 * server's own sessions, stateDir labStateDir(repo), verify while booting.
 * Throws LFB_ERR_INTERRUPTED when the signal ends it (the lab removed first).
 */
export async function runSureBackupJob(o: SureBackupJobRun): Promise<SureBackupResult> {
  const vms = await planPoints(o);
  await o.onPlanned?.(vms.map((v) => ({ job: v.job, point: v.point })));
  const labId = newLabId();
  const reportId = reportIdOf(o.clock.now(), labId);
  let verifying: Promise<unknown> = Promise.resolve();
  return runSureBackup({
    sessions: inProcessLabSessions(o.recovery),
    vms,
    stateDir: labStateDir(o.repo),
    reportDir: join(o.repo, 'surebackup', reportId),
    labId,
    reportId,
    ...(o.job.accel !== undefined ? { accel: o.job.accel } : {}),
    // One verify at a time: each rewrites its job's health record, and two VMs may be points of one job.
    verify: (job, pointId) => {
      const mine = verifying.then(() => verifyPoint(o.service, o.repo, job, pointId));
      verifying = mine.catch(() => undefined);
      return mine;
    },
    onProgress: o.onProgress,
    signal: o.signal,
    clock: o.clock,
  });
}

async function planPoints(o: SureBackupJobRun): Promise<LabVmSpec[]> {
  const group = sureBackupGroup(o.job);
  if (o.job.everyPoint !== true) return group;
  const given = sureBackupVms(o.job);
  const chosen = await choosePoints(
    given,
    async (job) => [...(await o.service.points(o.repo, job)).points].sort((a, b) => a.seq - b.seq).map((p) => p.id),
    o.tested,
  );
  for (const [i, c] of chosen.entries())
    o.onProgress(
      given[i]!.pinned
        ? `${c.job}: point ${c.point}, as the job names it`
        : c.retest
          ? `${c.job}: every point has been tested; testing the latest point ${c.point} again`
          : `${c.job}: testing point ${c.point}, the oldest not tested yet`,
    );
  return group.map((g, i) => ({ ...g, point: chosen[i]!.point }));
}

/** The app's verify of one point, as a lab test (as `surebackup run` does it). */
async function verifyPoint(service: LifeboatService, repo: string, job: string, pointId: string): Promise<LabTestResult> {
  const started = performance.now();
  const r = await service.verify(repo, job, { point: pointId, all: false });
  const ms = Math.round(performance.now() - started);
  if (r.problems.length === 0) return { name: 'verify', ok: true, detail: `${r.blocks} stored blocks of point ${pointId} read and checked`, ms };
  const first = r.problems[0]!;
  return { name: 'verify', ok: false, detail: `${r.problems.length} problem(s), first: ${first.file}: ${first.message} [${first.code}]`, ms };
}
