/**
 * Which server runs the scheduler of a set of repositories when several share
 * one catalog (PostgreSQL; high availability): the one holding the catalog's
 * lease for that set. It renews the lease every third of its time to live; a
 * server that stops gives it up, one that dies lets it expire, and a standby
 * takes it then. Alone on its catalog a server takes it at its first try.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hostname } from 'node:os';
import type { Catalog, LeaseAttempt, LeaseRecord } from '../../catalog/catalog.js';
import type { Logger } from '../../core/log.js';
import { repositoryHostRoot } from '../../repository/index.js';
import { repoSetKey } from './scheduler-heartbeat.js';

/** How long a lease lasts unless renewed: a standby takes over at most this long after its server died (plus a renewal period). */
export const DEFAULT_LEASE_TTL_MS = 15_000;

/** The lease of a set of repositories' scheduler (the set as the server was given it, as the heartbeat's file name). */
export function schedulerLeaseName(repos: readonly string[]): string {
  return `scheduler ${repoSetKey(repos)}`;
}

/**
 * Who a server is to the lease: its host name, and a key of a random id kept
 * in its state folder and of where it keeps its side of the repositories
 * (their host roots, where its one-server lock is). A server started again
 * in the same place is the same holder, and takes its lease back at once
 * instead of waiting for it to expire; two hosts of the same name (cloned
 * machines) are not.
 */
export async function serverHolderId(repos: readonly string[], stateDir: string): Promise<string> {
  const file = join(stateDir, 'instance-id');
  let id = (await readFile(file, 'utf8').catch(() => '')).trim();
  if (!/^[0-9a-f]{32}$/.test(id)) {
    id = randomBytes(16).toString('hex');
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await writeFile(`${file}.tmp`, `${id}\n`, { mode: 0o600 });
    await rename(`${file}.tmp`, file);
  }
  return `${hostname()} ${repoSetKey([id, ...repos.map((r) => repositoryHostRoot(r))])}`;
}

export class SchedulerLease {
  constructor(
    private readonly catalog: Catalog,
    readonly name: string,
    readonly holder: string,
    readonly ttlMs: number,
  ) {}

  /** Takes or renews the lease at `now`; a catalog failure rejects. */
  renew(now: number): Promise<LeaseAttempt> {
    return this.catalog.acquireLease(this.name, this.holder, new Date(now).toISOString(), this.ttlMs);
  }

  async release(now: number): Promise<void> {
    await this.catalog.releaseLease(this.name, this.holder, new Date(now).toISOString());
  }
}

/** What the runtime does when this server starts or stops running the scheduler. */
export interface LeadershipEvents {
  /** This server now holds the lease (`takenFrom`: the lease of another server, expired or given up, whose runs it finishes). */
  lead(takenFrom: LeaseRecord | undefined): Promise<void>;
  /** This server lost the lease (to `holder`, or it could not renew it in time). */
  lose(holder: string | undefined): void;
  /** Each renewal while leading. */
  renewed(): void;
}

/**
 * Keeps a SchedulerLease: renews it every third of its time to live and tells
 * the runtime when this server starts or stops leading. Leading ends a third
 * of the time to live before the lease would expire unless a renewal came
 * back by then (a watchdog of its own: a renewal that hangs, a catalog that
 * fails, or a machine that stalled, all end it), so the runs of a server cut
 * off are stopping before another server may take over; that third is also
 * what the servers' clocks may differ by.
 */
export class SchedulerLeadership {
  private timer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private round: Promise<void> = Promise.resolve();
  private stopped = false;
  private lastOther: string | undefined;
  /** Until when this server may act on its last renewal (its lease's expiry less the margin). */
  private actUntil = 0;
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

  private get period(): number {
    return Math.max(100, Math.floor(this.lease.ttlMs / 3));
  }

  /** The first attempt (awaited: a server alone on its catalog leads before start() returns), then one every ttl/3. */
  async start(): Promise<void> {
    await this.next();
    this.timer = setInterval(() => void this.next(), this.period);
    this.timer.unref();
  }

  /** No more attempts; the lease is given up if held (after the caller's runs ended), so a standby takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.watchdog) clearTimeout(this.watchdog);
    await this.round;
    if (!this.leading) return;
    this.leading = false;
    await this.lease
      .release(this.now())
      .catch((err: unknown) =>
        this.logger.warn('service: giving up the scheduler lease failed (another server takes over when it expires)', { problem: String(err) }),
      );
  }

  /** One attempt after the one before (never two at once); whatever fails is logged, never thrown out of the timer. */
  private next(): Promise<void> {
    this.round = this.round.then(() =>
      this.attempt().catch((err: unknown) =>
        this.logger.error('service: a round of the scheduler lease failed', { problem: err instanceof Error ? err.message : String(err) }),
      ),
    );
    return this.round;
  }

  private async attempt(): Promise<void> {
    if (this.stopped) return;
    const asked = this.now();
    let attempt: LeaseAttempt | undefined;
    let deadline: NodeJS.Timeout | undefined;
    try {
      // A renewal that does not come back within a period is a failed one (its late answer is not waited for).
      attempt = await Promise.race([
        this.lease.renew(asked),
        new Promise<undefined>((resolve) => {
          deadline = setTimeout(() => resolve(undefined), this.period);
        }),
      ]);
      if (attempt === undefined) throw new Error(`the catalog did not answer within ${this.period} ms`);
    } catch (err) {
      this.logger.warn('service: the scheduler lease could not be renewed', { problem: err instanceof Error ? err.message : String(err) });
      return;
    } finally {
      clearTimeout(deadline);
    }
    if (this.stopped) return;
    if (attempt.held) this.armWatchdog(Date.parse(attempt.lease.expiresAt) - this.lease.ttlMs / 3);
    if (attempt.held && !this.leading) {
      this.lastOther = undefined;
      this.logger.info('service: this server runs the scheduler', {
        lease: this.lease.name,
        holder: this.lease.holder,
        ...(attempt.takenFrom ? { takenFrom: attempt.takenFrom.holder, lastRenewed: attempt.takenFrom.renewedAt } : {}),
      });
      this.leading = true;
      try {
        await this.events.lead(attempt.takenFrom);
      } catch (err) {
        // Taking over failed half-way (the catalog): give the lease back and try again at the next round.
        this.logger.error('service: taking over the scheduler failed; trying again', { problem: err instanceof Error ? err.message : String(err) });
        this.drop(undefined);
        await this.lease.release(this.now()).catch(() => undefined);
      }
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

  /** Leading ends at `until` unless a later renewal moves it. */
  private armWatchdog(until: number): void {
    this.actUntil = until;
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = setTimeout(
      () => {
        if (!this.leading || this.stopped) return;
        // A timer may fire a moment before the clock says it is time: it waits the rest, never gives up the check.
        if (this.now() < this.actUntil) return this.armWatchdog(this.actUntil);
        this.drop(undefined);
      },
      Math.max(1, until - this.now()),
    );
    this.watchdog.unref();
  }

  private drop(holder: string | undefined): void {
    if (!this.leading) return;
    this.leading = false;
    if (this.watchdog) clearTimeout(this.watchdog);
    this.logger.error('service: this server lost the scheduler lease: its runs stop and it stands by', {
      lease: this.lease.name,
      ...(holder ? { holder } : {}),
    });
    this.events.lose(holder);
  }
}
