/**
 * What the HTTP API needs from the rest of the server. The API holds no state
 * of its own: jobs and points are read from the repositories through
 * LifeboatService, runs from the catalog, sessions from InstantRecovery.
 */
import type { Clock } from '../../core/clock.js';
import type { Logger } from '../../core/log.js';
import type { LifeboatService } from '../../app/service.js';
import type { Catalog, RunRecord, RunTrigger } from '../../catalog/catalog.js';
import type { Authenticator, Principal } from '../../auth/index.js';
import type { InstantRecovery } from '../../recovery/index.js';
import type { CatalogFreshness } from '../catalog-freshness.js';
import type { FileSessions } from '../file-sessions.js';
import type { MoverHub } from '../movers/mover-hub.js';

/**
 * Authentication as the API uses it: src/auth's Authenticator. `authenticate`
 * throws LFB_ERR_UNAUTHENTICATED without valid credentials and
 * LFB_ERR_FORBIDDEN for a cookie request that changes something without the
 * session's CSRF token; `login` throws LFB_ERR_UNAUTHENTICATED for a wrong
 * name or password and LFB_ERR_RATE_LIMITED after too many.
 */
export type HttpAuth = Pick<Authenticator, 'authenticate' | 'login' | 'logout'>;
export type { Principal };

/** Live progress of one running run (between catalog updates). */
export interface RunProgress {
  readonly disk: number;
  readonly diskCount: number;
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

/**
 * Starts and stops runs (the scheduler's runtime implements it). `runNow`
 * records the run in the catalog and returns it as recorded (queued or
 * running); the run goes on after the call returns.
 */
export interface JobRunner {
  runNow(repo: string, job: string, trigger: RunTrigger): Promise<RunRecord>;
  /** Stops a queued or running run; it ends as `stopped`. LFB_ERR_RUN_NOT_FOUND when there is no such run. */
  stop(runId: number): Promise<void>;
  /**
   * Progress events of a running run until it ends, and `ended` once its end
   * is recorded in the catalog; returns the unsubscribe. Optional: without it,
   * events come from the catalog alone.
   */
  watch?(runId: number, listener: (p: RunProgress) => void, ended?: () => void): () => void;
  /** A job was created, changed or deleted through the API: its schedule counts from now, not from the scheduler's next round. */
  jobChanged?(repo: string, job: string): void;
  /** Queues a run of a SureBackup job (kind 'surebackup'); optional: without it SureBackup jobs run only by the scheduler of a server that has it. */
  runSureBackupNow?(repo: string, name: string, trigger: RunTrigger): Promise<RunRecord>;
  /** Queues a run of a copy job (kind 'copy'); optional as runSureBackupNow is. */
  runCopyNow?(repo: string, name: string, trigger: RunTrigger): Promise<RunRecord>;
  /** Queues a run of the repository's capacity tier (kind 'tier'); LFB_ERR_NO_CAPACITY_TIER without one. */
  runTierNow?(repo: string, trigger: RunTrigger): Promise<RunRecord>;
}

export interface HttpApiDeps {
  readonly service: LifeboatService;
  /** Repository roots this server serves (absolute paths). */
  readonly repos: readonly string[];
  /** Instant-recovery sessions, by the root of the repository they belong to. */
  readonly recovery?: ReadonlyMap<string, InstantRecovery> | undefined;
  readonly catalog: Catalog;
  readonly auth: HttpAuth;
  readonly runner?: JobRunner | undefined;
  /** The server's data movers (the runtime's backups go through it). */
  readonly movers?: MoverHub | undefined;
  readonly clock: Clock;
  readonly logger: Logger;
  /** HTTPS: the certificate and key (PEM). The session cookie is then `Secure`. Without it the server speaks plain HTTP (`--no-tls`, loopback). */
  readonly https?: { readonly cert: Buffer | string; readonly key: Buffer | string } | undefined;
  /** Folders operators may restore and migrate into (admins may name any path); none: only admins choose where the server writes. */
  readonly targetFolders?: readonly string[] | undefined;
  /** The catalog reader of jobs and points the server shares with its runtime (which refreshes a job when a run of it ends); one is made if not given. */
  readonly freshness?: CatalogFreshness | undefined;
  /** File-level recovery: a point's file session closes after this long unused (default 10 min). */
  readonly filesIdleTimeoutMs?: number | undefined;
  /** File sessions open at once (default 4). */
  readonly maxFileSessions?: number | undefined;
  /** The server's file sessions, shared with its control API (`lifeboat files` of the CLI); one is made from the two above if not given. */
  readonly fileSessions?: FileSessions | undefined;
  /** Server-Sent Events: how often the catalog is polled and a keepalive comment sent (ms). */
  readonly events?: { readonly pollMs?: number; readonly keepaliveMs?: number; readonly maxStreams?: number } | undefined;
}
