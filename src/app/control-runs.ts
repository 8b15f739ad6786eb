import type { BackupProgress, BackupResult } from '../methods/backup-run.js';
import type { CopyResult } from '../methods/copy-run.js';

export type { BackupProgress, BackupResult };

/** What `lifeboat backup` asks of a running server instead of running the job itself. */
export interface HandOffRequest {
  readonly job: string;
  /** 'surebackup': `job` is a SureBackup job of the repository (`surebackup job run`); 'copy': a copy job (`copy run`); default a backup job. */
  readonly kind?: 'backup' | 'surebackup' | 'copy';
  readonly activeFull: boolean;
  readonly acceptSourceChange: boolean;
  /** Wait this long for the job's lock instead of failing at once (--wait). */
  readonly waitMs: number;
}

/** A run handed to the server, as the CLI follows it. */
export interface HandedOffRun {
  readonly id: number;
  readonly state: 'queued' | 'running' | 'succeeded' | 'warning' | 'failed' | 'interrupted' | 'stopped';
  /** Running disk tasks of other runs ahead of it, while it is queued. */
  readonly waitingFor?: number;
  readonly progress?: BackupProgress;
  /** When it succeeded (or warned): what a local run would have returned. */
  readonly result?: BackupResult;
  /** A copy job's run, when it succeeded: what a local `copy run` would have returned. */
  readonly copyResult?: CopyResult;
  readonly error?: { readonly code: string; readonly message: string };
  /** A SureBackup job's run, once its report is recorded. */
  readonly labReport?: { readonly id: string; readonly ok: boolean; readonly reportDir: string };
}

/**
 * Runs through the control API: the service (src/service) implements it, so a
 * `lifeboat backup` while a server runs for the repository becomes a run of
 * that server (its catalog, its task cap, its warm workers).
 */
export interface ControlRuns {
  start(req: HandOffRequest): Promise<{ readonly id: number }>;
  get(id: number): Promise<HandedOffRun>;
  stop(id: number): Promise<void>;
}
