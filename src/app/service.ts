import { isLifeboatError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import type { Weekday } from '../core/clock.js';
import { localTimeZone, nextFire } from '../core/schedule-text.js';
import { scheduleSettings, withoutUndefined, type ScheduleSettingsChange } from './schedule-settings.js';
import type { CompressionSetting } from '../compress/codec.js';
import { BlockWorkerPool } from '../compress/block-pool.js';
import { runBackup, type BackupProgress, type BackupResult } from '../methods/backup-run.js';
import { movedFiles, planChains } from '../methods/retention-run.js';
import { immutableRetentionPlan } from '../methods/immutable-retention.js';
import { refuseRewritingJob } from '../repository/immutability.js';
import { collectUnusedObjects, compactJob, type CompactResult } from '../methods/compact.js';

/** What compact did on object storage: the collection's counts, or 'busy' when a job's run kept it from collecting. */
export type CompactObjects = NonNullable<Awaited<ReturnType<typeof collectUnusedObjects>>>;
import { createCopyJob, deleteCopyJob, listCopyJobs, loadCopyJob, type CopyJobDefinition, type CopySettings } from '../methods/copy-job.js';
import { runCopy, type CopyProgress, type CopyResult } from '../methods/copy-run.js';
import {
  Repository,
  createJob,
  deleteJob,
  updateJob,
  retentionPolicy,
  filesForPoint,
  loadJob,
  resolvePoint,
  scanJob,
  verifyJob,
  damageByPoint,
  recordHealth,
  RestorePointDisk,
  type BackupMethod,
  type PointDamage,
  type RepositoryConfig,
  type JobDefinition,
  type JobSettings,
  type JobState,
  type PointInfo,
  type VerifyProgress,
  type VerifyResult,
} from '../repository/index.js';
import { planRetention, type RetentionPlan } from '../retention/index.js';
import { restoreDisk, type RestoreFormat, type RestoreProgress } from '../restore/index.js';
import { refuseUntrackableCbt } from './cbt-support.js';
import { readVmConfig, resolveJobDisks } from './job-inputs.js';
import { diskIndexOf, planRestore } from './restore-plan.js';

export type { ScheduleSettingsChange };
export { resolvePoint };

/**
 * The service facade: every user-facing operation, once. The CLI, the HTTP
 * API and the scheduler call these and nothing deeper.
 */
export class LifeboatService {
  constructor(readonly clock: Clock) {}

  async initRepository(dir: string, blockSize: number, compression: CompressionSetting, opts: { immutableDays?: number } = {}): Promise<Repository> {
    return Repository.init(dir, { blockSize, compression, now: this.clock.now(), ...opts });
  }

  async createJob(
    repoDir: string,
    spec: {
      name: string;
      disks: string[];
      qmp?: string | undefined;
      drives?: string[] | undefined;
      method: BackupMethod;
      retainPoints: number;
      retainDays?: number | undefined;
      activeFullDays: Weekday[];
      syntheticFullDays?: Weekday[] | undefined;
      transformToRollbacks?: boolean | undefined;
      cbt?: boolean | undefined;
      diskFormat?: string | undefined;
      gfs?: { weekly: number; monthly: number; yearly: number } | undefined;
      vmConfigFile?: string | undefined;
    } & ScheduleSettingsChange,
  ): Promise<JobDefinition> {
    const repo = await Repository.open(repoDir);
    refuseRewritingJob(repo, spec);
    const disks = await resolveJobDisks(spec.disks, spec.qmp, spec.drives);
    if (spec.cbt === true) await refuseUntrackableCbt(disks, spec.diskFormat);
    const vm = spec.vmConfigFile === undefined ? null : await readVmConfig(spec.vmConfigFile);
    return createJob(repo, {
      name: spec.name,
      createdAt: this.clock.now().toISOString(),
      disks,
      method: spec.method,
      retainPoints: spec.retainPoints,
      ...(spec.retainDays === undefined ? {} : { retainDays: spec.retainDays }),
      activeFullDays: spec.activeFullDays,
      ...(spec.syntheticFullDays && spec.syntheticFullDays.length > 0 ? { syntheticFullDays: spec.syntheticFullDays } : {}),
      ...(spec.transformToRollbacks ? { transformToRollbacks: true } : {}),
      ...(spec.cbt ? { cbt: true } : {}),
      ...(spec.diskFormat ? { diskFormat: spec.diskFormat } : {}),
      ...(spec.gfs ? { gfs: spec.gfs } : {}),
      ...withoutUndefined(scheduleSettings(spec)),
      blockSize: repo.config.blockSize,
      compression: repo.config.compression,
      vm,
    });
  }

  /** The repository's settings (lifeboat.json). */
  async repositoryConfig(repoDir: string): Promise<RepositoryConfig> {
    return (await Repository.open(repoDir)).config;
  }

  async listJobs(repoDir: string): Promise<string[]> {
    return (await Repository.open(repoDir)).listJobs();
  }

  /** A job's settings from its job.json alone (no backup file read); LFB_ERR_JOB_NOT_FOUND when there is no such job. */
  async jobDefinition(repoDir: string, name: string): Promise<JobDefinition> {
    return loadJob(await Repository.open(repoDir), name);
  }

  /** `job show`: the job's settings and how many restore points it has. */
  async showJob(
    repoDir: string,
    name: string,
  ): Promise<{ job: JobDefinition; points: number; damagedFiles: number; nextRunAt: string | null; timeZone: string }> {
    const { job, state } = await this.jobState(repoDir, name);
    // When a server would next start it by its schedule (in the server's time zone), if it has one and is enabled.
    const next = job.schedule === undefined || job.disabled === true ? null : nextFire(job.schedule, this.clock.now().getTime());
    return {
      job,
      points: state.points.length,
      damagedFiles: state.damaged.length,
      nextRunAt: next === null ? null : new Date(next).toISOString(),
      timeZone: localTimeZone(),
    };
  }

  /**
   * `job set`: changes the given settings of a job, checked by the rules of
   * `job create`, under the job lock (never in the middle of a backup run).
   * Retention by points and by days replace each other.
   */
  async setJob(
    repoDir: string,
    name: string,
    changes: {
      disks?: string[] | undefined;
      qmp?: string | undefined;
      drives?: string[] | undefined;
      method?: BackupMethod | undefined;
      retainPoints?: number | undefined;
      retainDays?: number | undefined;
      activeFullDays?: Weekday[] | undefined;
      syntheticFullDays?: Weekday[] | undefined;
      transformToRollbacks?: boolean | undefined;
      cbt?: boolean | undefined;
      diskFormat?: string | undefined;
      /** null: no GFS any more. */
      gfs?: { weekly: number; monthly: number; yearly: number } | null | undefined;
      vmConfigFile?: string | undefined;
    } & ScheduleSettingsChange,
    opts: { waitMs?: number } = {},
  ): Promise<{ before: JobDefinition; after: JobDefinition }> {
    const repo = await Repository.open(repoDir);
    const newDisks =
      changes.disks !== undefined || changes.qmp !== undefined ? await resolveJobDisks(changes.disks ?? [], changes.qmp, changes.drives) : undefined;
    const vm = changes.vmConfigFile === undefined ? undefined : await readVmConfig(changes.vmConfigFile);
    const set: { -readonly [K in keyof JobSettings]?: JobSettings[K] } = {};
    if (newDisks !== undefined) set.disks = newDisks;
    if (changes.method !== undefined) set.method = changes.method;
    if (changes.retainPoints !== undefined) Object.assign(set, { retainPoints: changes.retainPoints, retainDays: undefined });
    if (changes.retainDays !== undefined) set.retainDays = changes.retainDays;
    if (changes.activeFullDays !== undefined) set.activeFullDays = changes.activeFullDays;
    if (changes.syntheticFullDays !== undefined) set.syntheticFullDays = changes.syntheticFullDays.length > 0 ? changes.syntheticFullDays : undefined;
    if (changes.transformToRollbacks !== undefined) set.transformToRollbacks = changes.transformToRollbacks || undefined;
    if (changes.cbt !== undefined) set.cbt = changes.cbt || undefined;
    if (changes.diskFormat !== undefined) set.diskFormat = changes.diskFormat;
    if (changes.gfs !== undefined) set.gfs = changes.gfs ?? undefined;
    if (vm !== undefined) set.vm = vm;
    Object.assign(set, scheduleSettings(changes));
    if (changes.cbt === true || (changes.cbt === undefined && (newDisks !== undefined || changes.diskFormat !== undefined))) {
      // Checked against the disks and format the job will have, before anything is written.
      const job = await loadJob(repo, name);
      if (changes.cbt ?? job.cbt === true) await refuseUntrackableCbt(set.disks ?? job.disks, set.diskFormat ?? job.diskFormat);
    }
    return updateJob(repo, name, () => set, opts);
  }

  /** `job delete`: the job's folder; its points only with `withPoints`, never while a session holds one. */
  async deleteJob(repoDir: string, name: string, opts: { withPoints: boolean; waitMs?: number }): Promise<{ pointsDeleted: number; filesDeleted: number }> {
    return deleteJob(await Repository.open(repoDir), name, { ...opts, repoArg: repoDir, now: this.clock.now() });
  }

  async backup(
    repoDir: string,
    job: string,
    opts: {
      activeFull?: boolean;
      waitMs?: number;
      onProgress?: (p: BackupProgress) => void;
      acceptSourceChange?: boolean;
      signal?: AbortSignal;
      /** A warm pool the server keeps for every run (one is started and stopped per run otherwise). */
      pool?: BlockWorkerPool;
    },
  ): Promise<BackupResult> {
    // Without a warm pool, and with no job lock to wait for (idle workers are
    // not held through a wait), the workers start loading now, while the
    // repository opens: an encrypted one derives its key meanwhile.
    const pool = opts.pool ?? (opts.waitMs ? undefined : new BlockWorkerPool());
    try {
      const repo = await Repository.open(repoDir);
      return await runBackup(repo, job, { clock: this.clock, ...opts, ...(pool ? { pool } : {}) });
    } finally {
      if (pool !== undefined && pool !== opts.pool) await pool.close();
    }
  }

  /** `copy create`: records a copy job in repoDir, making the target repository and its job when missing. */
  async createCopyJob(repoDir: string, settings: CopySettings): Promise<CopyJobDefinition> {
    return createCopyJob(repoDir, settings, this.clock.now());
  }

  async copyJob(repoDir: string, name: string): Promise<CopyJobDefinition> {
    return loadCopyJob(await Repository.open(repoDir), name);
  }

  async listCopyJobs(repoDir: string): Promise<CopyJobDefinition[]> {
    return listCopyJobs(await Repository.open(repoDir));
  }

  async deleteCopyJob(repoDir: string, name: string): Promise<void> {
    await deleteCopyJob(await Repository.open(repoDir), name);
  }

  /** `copy run`: the function the scheduler is to call too. */
  async runCopy(
    repoDir: string,
    name: string,
    opts: { waitMs?: number; onProgress?: (p: CopyProgress) => void; signal?: AbortSignal; pool?: BlockWorkerPool } = {},
  ): Promise<CopyResult> {
    return runCopy(repoDir, name, { clock: this.clock, ...opts });
  }

  async jobState(repoDir: string, job: string): Promise<{ job: JobDefinition; state: JobState; repo: Repository }> {
    const repo = await Repository.open(repoDir);
    const def = await loadJob(repo, job);
    return { job: def, state: await scanJob(repo.jobDir(def.name), repo.storage), repo };
  }

  async points(repoDir: string, job: string): Promise<{ points: readonly PointInfo[]; state: JobState }> {
    const { state } = await this.jobState(repoDir, job);
    return { points: state.points, state };
  }

  async retentionPlan(repoDir: string, job: string): Promise<RetentionPlan> {
    const { job: def, state, repo } = await this.jobState(repoDir, job);
    const now = this.clock.now();
    // On an immutable repository, what retention would delete before its date stays, with that reason.
    return immutableRetentionPlan(repo, state, planRetention(planChains(state, await movedFiles(state)), retentionPolicy(def, now)), now);
  }

  /**
   * Opens one disk of a restore point as a read-only virtual disk. A backup may
   * merge or delete files between our scan and the open; once opened, files
   * stay readable (append-only data, open descriptors), so a vanished file just
   * means scanning again.
   */
  async openPointDisk(
    repoDir: string,
    job: string,
    point: string,
    disk: string | undefined,
    pool?: BlockWorkerPool,
  ): Promise<{ disk: RestorePointDisk; point: PointInfo; diskIndex: number; diskName: string }> {
    for (let attempt = 1; ; attempt++) {
      const { state, repo } = await this.jobState(repoDir, job);
      const p = resolvePoint(state, point);
      const files = filesForPoint(state, p.id)!;
      const top = files[files.length - 1]!;
      const names = top.root.meta.vm.disks.map((d) => d.name);
      const diskIndex = diskIndexOf(disk, names);
      try {
        return {
          disk: await RestorePointDisk.open(files, diskIndex, { storage: repo.storage, ...(pool ? { pool } : {}) }),
          point: p,
          diskIndex,
          diskName: names[diskIndex] ?? `disk${diskIndex}`,
        };
      } catch (err) {
        const vanished = isLifeboatError(err, 'LFB_ERR_IO') && err.details['errno'] === 'ENOENT';
        if (!vanished || attempt >= 3) throw err;
      }
    }
  }

  /** `lifeboat compact`: drops the dead space merges and reverse runs leave in backup files. */
  async compact(repoDir: string, job: string, opts: { waitMs?: number; packGraceMs?: number } = {}): Promise<CompactResult & { objects?: CompactObjects }> {
    const repo = await Repository.open(repoDir);
    const r = await compactJob(repo, job, this.clock, opts);
    const objects = await collectUnusedObjects(repo, opts.packGraceMs);
    return objects === undefined ? r : { ...r, objects };
  }

  /**
   * `lifeboat verify`: the health check of one point's files, or of every
   * file of the job. Points found damaged are marked in the job's health
   * record (and never served); points found whole are cleared. With
   * `repair`, a damaged latest point is followed at once by a backup run
   * that reads the damaged blocks again from the source, and the new point
   * is checked in turn. Older damaged points cannot be repaired (the source
   * has moved on): they stay marked.
   */
  async verify(
    repoDir: string,
    job: string,
    opts: {
      point?: string | undefined;
      all: boolean;
      repair?: boolean;
      onProgress?: (p: VerifyProgress) => void;
      onBackupProgress?: (p: BackupProgress) => void;
    },
  ): Promise<
    VerifyResult & {
      damagedPoints: readonly { id: string; damage: PointDamage }[];
      repair?: { backup: BackupResult; check: VerifyResult; whole: boolean } | { skipped: string };
    }
  > {
    const { state } = await this.jobState(repoDir, job);
    const r = await verifyJob(state, { point: opts.point, all: opts.all }, opts.onProgress);
    const damage = await damageByPoint(state, r.points, r.problems, this.clock.now());
    await recordHealth(state, r.points, damage);
    const damagedPoints = [...damage].map(([id, d]) => ({ id, damage: d }));
    if (!opts.repair || r.problems.length === 0) return { ...r, damagedPoints };
    const latest = state.points[state.points.length - 1];
    if (!latest || !damage.has(latest.id)) {
      return {
        ...r,
        damagedPoints,
        repair: {
          skipped:
            latest && r.points.includes(latest.id)
              ? `the latest point ${latest.id} is whole; older points cannot be made again from today's source`
              : 'the latest point was not checked (use --all or --point latest)',
        },
      };
    }
    const backup = await this.backup(repoDir, job, opts.onBackupProgress ? { onProgress: opts.onBackupProgress } : {});
    const after = (await this.jobState(repoDir, job)).state;
    const check = await verifyJob(after, { point: backup.pointId, all: false });
    // The files may still hold damaged blocks the new point does not read: it is whole if it reads none.
    const left = await damageByPoint(after, check.points, check.problems, this.clock.now());
    await recordHealth(after, check.points, left);
    return { ...r, damagedPoints, repair: { backup, check, whole: left.size === 0 } };
  }

  async restore(
    repoDir: string,
    job: string,
    opts: {
      point: string;
      to: string;
      disk?: string | undefined;
      format?: RestoreFormat | undefined;
      force: boolean;
      onProgress?: (p: RestoreProgress & { disk: string }) => void;
    },
  ): Promise<{ point: PointInfo; targets: { disk: string; path: string; format: RestoreFormat; bytesWritten: number }[] }> {
    const { state } = await this.jobState(repoDir, job);
    const p = resolvePoint(state, opts.point);
    const plan = await planRestore(p, opts);
    const targets: { disk: string; path: string; format: RestoreFormat; bytesWritten: number }[] = [];
    // One worker pool decodes blocks for every disk of the restore.
    const pool = new BlockWorkerPool();
    try {
      for (const d of plan.disks) {
        const opened = await this.openPointDisk(repoDir, job, p.id, d, pool);
        try {
          const { path, format } = plan.target(opened.diskName, p.vm.disks[opened.diskIndex]?.format);
          const r = await restoreDisk(opened.disk, path, {
            format,
            force: opts.force,
            onProgress: (pr) => opts.onProgress?.({ ...pr, disk: opened.diskName }),
          });
          targets.push({ disk: opened.diskName, path, format, bytesWritten: r.bytesWritten });
        } finally {
          await opened.disk.close();
        }
      }
    } finally {
      await pool.close();
    }
    return { point: p, targets };
  }
}
