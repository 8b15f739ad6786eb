/**
 * Which server runs the scheduler of a set of repositories when several share
 * one catalog (PostgreSQL; high availability): the one holding the catalog's
 * lease for that set. It renews the lease every third of its time to live; a
 * server that stops gives it up, one that dies lets it expire, and a standby
 * takes it then. Alone on its catalog a server takes it at its first try.
 */
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import type { Catalog, LeaseAttempt, LeaseRecord } from '../../catalog/catalog.js';
import type { Logger } from '../../core/log.js';
import { repositoryHostRoot } from '../../repository/index.js';

/** How long a lease lasts unless renewed: a standby takes over at most this long after its server died (plus a renewal period). */
export const DEFAULT_LEASE_TTL_MS = 15_000;

const setKey = (repos: readonly string[]): string => createHash('sha256').update(repos.join('\n')).digest('hex').slice(0, 12);

/** The lease of a set of repositories' scheduler (the set as the server was given it, as the heartbeat's file name). */
export function schedulerLeaseName(repos: readonly string[]): string {
  return `scheduler ${setKey(repos)}`;
}

/**
 * Who a server is to the lease: its host, and where it keeps its side of the
 * repositories (their host roots, where its one-server lock is). A server
 * started again in the same place is the same holder, and takes its lease
 * back at once instead of waiting for it to expire.
 */
export function serverHolderId(repos: readonly string[]): string {
  return `${hostname()} ${setKey(repos.map((r) => repositoryHostRoot(r)))}`;
}

export class SchedulerLease {
  private expiresAt = 0;

  constructor(
    private readonly catalog: Catalog,
    readonly name: string,
    readonly holder: string,
    readonly ttlMs: number,
  ) {}

  /** Takes or renews the lease at `now`; a catalog failure rejects (the caller keeps what it had until `heldUntil`). */
  async renew(now: number): Promise<LeaseAttempt> {
    const attempt = await this.catalog.acquireLease(this.name, this.holder, new Date(now).toISOString(), this.ttlMs);
    this.expiresAt = attempt.held ? Date.parse(attempt.lease.expiresAt) : 0;
    return attempt;
  }

  /** Until when this server may act on its last successful renewal (0 when it does not hold the lease). */
  get heldUntil(): number {
    return this.expiresAt;
  }

  async release(): Promise<void> {
    this.expiresAt = 0;
    await this.catalog.releaseLease(this.name, this.holder);
  }
}

/** What the runtime does when this server starts or stops running the scheduler. */
export interface LeadershipEvents {
  /** This server now holds the lease (`takenFrom`: the expired lease of another server, whose runs it finishes). */
  lead(takenFrom: LeaseRecord | undefined): Promise<void>;
  /** This server lost the lease (to `holder`, or it could not renew it in time). */
  lose(holder: string | undefined): void;
  /** Each renewal while leading. */
  renewed(): void;
}

/**
 * Keeps a SchedulerLease: renews it every third of its time to live and tells
 * the runtime when this server starts or stops leading. A renewal the catalog
 * fails keeps the lead until the lease would expire, not longer: by then
 * another server may have taken it.
 */
export class SchedulerLeadership {
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> = Promise.resolve();
  private stopped = false;
  private lastOther: string | undefined;
  leading = false;

  constructor(
    private readonly lease: SchedulerLease,
    private readonly now: () => number,
    private readonly logger: Logger,
    private readonly events: LeadershipEvents,
  ) {}

  get holder(): string {
    return this.lease.holder;
  }

  /** The first attempt (awaited: a server alone on its catalog leads before start() returns), then one every ttl/3. */
  async start(): Promise<void> {
    await this.attempt();
    this.timer = setInterval(
      () => {
        this.round = this.round.then(() => this.attempt());
      },
      Math.max(100, Math.floor(this.lease.ttlMs / 3)),
    );
    this.timer.unref();
  }

  /** No more attempts; the lease is given up if held, so a standby takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.round;
    if (!this.leading) return;
    this.leading = false;
    await this.lease
      .release()
      .catch((err: unknown) =>
        this.logger.warn('service: giving up the scheduler lease failed (another server takes over when it expires)', { problem: String(err) }),
      );
  }

  private async attempt(): Promise<void> {
    if (this.stopped) return;
    const now = this.now();
    let attempt: LeaseAttempt;
    try {
      attempt = await this.lease.renew(now);
    } catch (err) {
      this.logger.warn('service: the scheduler lease could not be renewed', { problem: err instanceof Error ? err.message : String(err) });
      if (this.leading && this.now() >= this.lease.heldUntil) this.drop(undefined);
      return;
    }
    if (this.stopped) return;
    if (attempt.held && !this.leading) {
      this.leading = true;
      this.lastOther = undefined;
      this.logger.info('service: this server runs the scheduler', {
        lease: this.lease.name,
        holder: this.lease.holder,
        ...(attempt.takenFrom ? { takenFrom: attempt.takenFrom.holder, lastRenewed: attempt.takenFrom.renewedAt } : {}),
      });
      await this.events.lead(attempt.takenFrom);
    } else if (!attempt.held && this.leading) {
      this.drop(attempt.lease.holder);
    } else if (!attempt.held && this.lastOther !== attempt.lease.holder) {
      this.lastOther = attempt.lease.holder;
      this.logger.info('service: standing by: another server runs the scheduler', {
        lease: this.lease.name,
        holder: attempt.lease.holder,
        until: attempt.lease.expiresAt,
      });
    }
    if (this.leading) this.events.renewed();
  }

  private drop(holder: string | undefined): void {
    this.leading = false;
    this.logger.error('service: this server lost the scheduler lease: its runs stop and it stands by', {
      lease: this.lease.name,
      ...(holder ? { holder } : {}),
    });
    this.events.lose(holder);
  }
}
