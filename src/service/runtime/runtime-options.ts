/** What a server gives its scheduler runtime (service-runtime.ts) and the executions of its runs (executions.ts). */
import type { LifeboatService } from '../../app/service.js';
import type { Catalog, RunRecord } from '../../catalog/catalog.js';
import type { BlockWorkerPool } from '../../compress/block-pool.js';
import type { Clock } from '../../core/clock.js';
import type { Logger } from '../../core/log.js';
import type { InstantRecovery } from '../../recovery/index.js';
import type { BackupRunner } from './backup-runner.js';

export interface ServiceRuntimeOptions {
  readonly catalog: Catalog;
  readonly service: LifeboatService;
  /** Repository roots whose jobs this server runs. */
  readonly repos: readonly string[];
  /** Where the scheduler keeps its heartbeat (the time it last decided), to find runs missed while it was down. */
  readonly stateDir: string;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Running disk tasks at most (default 4). */
  readonly maxTasks?: number | undefined;
  readonly timeZone?: string | undefined;
  /** Called when a backup run's work has ended, before it is recorded as ended (the server refreshes the job's catalog copy). */
  readonly beforeRunEnds?: ((repo: string, job: string) => Promise<void>) | undefined;
  /** Told of every run that ended (webhooks, the journal line). */
  readonly onRunEnded?: ((run: RunRecord) => void | Promise<void>) | undefined;
  /** False: no run is queued by a schedule or a chain (runs asked for still run). Default true. */
  readonly schedules?: boolean | undefined;
  /** Where the backups run: the server's data mover (data-mover.ts). Default: on this thread, hashing and compressing on `pool`. */
  readonly runner?: BackupRunner | undefined;
  /** A warm worker pool for backups run on this thread (without it each run starts its own). */
  readonly pool?: BlockWorkerPool | undefined;
  /** The longest the scheduler sleeps: it also rereads the jobs (a `job set` from the CLI) this often. */
  readonly maxSleepMs?: number | undefined;
  /** Where SureBackup jobs' lab VMs run: the repository's instant sessions (without them their runs fail with LFB_ERR_SERVER_NOT_RUNNING). */
  readonly recovery?: ((repo: string) => InstantRecovery | undefined) | undefined;
  /** Who this server is to the scheduler's lease (default serverHolderId(repos): the same after a restart in the same place). */
  readonly holder?: string | undefined;
  /** The scheduler lease's time to live (default DEFAULT_LEASE_TTL_MS). */
  readonly leaseTtlMs?: number | undefined;
}
