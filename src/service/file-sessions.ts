/**
 * File-level recovery sessions of the server: one browse (src/files: one
 * libguestfs appliance, the point's file systems mounted in it) per
 * (repository, job, point), opened by the first request that needs it and
 * reused by every later one, since the appliance's boot takes 12 to 30 s
 * under TCG. A session ends after an idle time, on close(key), and when the
 * server stops (closeAll). While open, its point is held against retention
 * (the hold src/files' point export writes).
 *
 * At most `max` sessions at once: a new one closes the least recently used
 * session no request is using; when every session is in use the request is
 * refused with LFB_ERR_RATE_LIMITED (429, retry later).
 *
 * The appliance reads the point over NBD served by this process, whose
 * backup-file reads use libuv's thread pool. Requests read the guest through
 * the appliance's own calls (src/files/guest-fs.ts: one guestfish command at
 * a time per session, streams through a named pipe and a child `dd`), so
 * nothing of theirs waits for the appliance in that pool.
 *
 * An open that fails for what the point holds (its disks have no file system
 * an appliance that still answers can mount) is remembered for the idle time:
 * a point never changes, so requests for it meanwhile get the same answer at
 * once instead of booting another appliance each to find it again. The time
 * bounds a wrong memory (a read error the appliance took for a damaged file
 * system), and closing the point's session (DELETE) forgets it at once. Other
 * failures (the appliance could not start, the server was stopping) are tried
 * again by the next request.
 */
import { LifeboatError, isLifeboatError, type ErrorCode } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import { ephemeralSource, openBrowse, type OpenedBrowse, type SharedDecoding } from '../files/index.js';
import { Repository, loadJob, resolvePoint, scanJob } from '../repository/index.js';

export const DEFAULT_FILES_IDLE_MS = 10 * 60_000;
export const DEFAULT_MAX_FILE_SESSIONS = 4;
/** Failures a point's own bytes cause: the same for every later open of that point. */
const FAILURES_OF_THE_POINT: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['LFB_ERR_NO_FILESYSTEM']);
/** How many failed points are remembered (the oldest forgotten first): bounded whatever clients ask for. */
const MAX_REMEMBERED_FAILURES = 1000;

export interface FileSessionInfo {
  readonly repo: string;
  readonly job: string;
  readonly pointId: string;
  /** opening: the appliance is booting; open: ready. */
  readonly state: 'opening' | 'open';
  readonly openedAt: string;
  readonly lastUsedAt: string;
  /** When it closes if no request uses it before (absent while a request uses it). */
  readonly idleDeadline?: string;
  readonly requests: number;
}

interface Entry {
  readonly key: string;
  readonly repo: string;
  readonly job: string;
  readonly pointId: string;
  readonly openedAt: Date;
  lastUsed: Date;
  inFlight: number;
  ready: boolean;
  readonly opening: Promise<OpenedBrowse>;
  timer?: NodeJS.Timeout;
}

/** A session in use by one request: release() when the request is done with it (a download: when its stream ends). */
export interface FileSessionLease {
  readonly browse: OpenedBrowse;
  release(): void;
}

export class FileSessions {
  private readonly entries = new Map<string, Entry>();
  private readonly closing = new Set<Promise<void>>();
  /** Points whose open failed for what they hold, by session key, oldest first. */
  private readonly failedOpens = new Map<string, { readonly error: LifeboatError; readonly at: Date }>();
  private stopped = false;

  constructor(
    private readonly o: {
      readonly idleMs?: number | undefined;
      readonly max?: number | undefined;
      readonly clock: Clock;
      readonly logger: Logger;
      /** The worker pool and caches the server shares with a browse of the repository at `root` (undefined: it decodes alone). */
      readonly sharedDecoding?: ((root: string) => Promise<SharedDecoding | undefined>) | undefined;
    },
  ) {}

  get max(): number {
    return this.o.max ?? DEFAULT_MAX_FILE_SESSIONS;
  }

  get idleMs(): number {
    return this.o.idleMs ?? DEFAULT_FILES_IDLE_MS;
  }

  /** The point's id: the session's key names the point itself, so `latest` and the id share one session. */
  private async pointIdOf(root: string, job: string, pointRef: string): Promise<string> {
    const repo = await Repository.open(root);
    const def = await loadJob(repo, job);
    return resolvePoint(await scanJob(repo.jobDir(def.name), repo.storage), pointRef).id;
  }

  /** The session of the point (opened if needed; the call waits for the appliance), in use until release(). */
  async acquire(repoName: string, root: string, job: string, pointRef: string): Promise<FileSessionLease> {
    if (this.stopped) throw new LifeboatError('LFB_ERR_SERVER_NOT_RUNNING', 'the server is stopping');
    const pointId = await this.pointIdOf(root, job, pointRef);
    // Again after the scan: a server that began stopping meanwhile has closed every session it had, not one made now.
    if (this.stopped) throw new LifeboatError('LFB_ERR_SERVER_NOT_RUNNING', 'the server is stopping');
    const key = `${root}\0${job}\0${pointId}`;
    let e = this.entries.get(key);
    if (e === undefined) this.throwIfRemembered(key, pointId);
    if (e === undefined) {
      this.makeRoom();
      const opening = openBrowse(async (workDir) => ephemeralSource(root, job, pointId, workDir, this.o.logger, await this.o.sharedDecoding?.(root)));
      const now = this.o.clock.now();
      const made: Entry = { key, repo: repoName, job, pointId, openedAt: now, lastUsed: now, inFlight: 0, ready: false, opening };
      e = made;
      this.entries.set(key, made);
      opening.then(
        (b) => {
          made.ready = true;
          this.failedOpens.delete(key);
          this.o.logger.info('files: session opened', {
            repo: repoName,
            job,
            point: pointId,
            fileSystems: b.browse.fsIds(),
          });
        },
        // A failed open leaves no session; only a failure of the point itself is remembered.
        (err: unknown) => {
          if (this.entries.get(key) === made) this.entries.delete(key);
          if (isLifeboatError(err) && FAILURES_OF_THE_POINT.has(err.code)) this.rememberFailure(key, job, pointId, err);
        },
      );
    }
    const entry = e;
    entry.inFlight++;
    clearTimeout(entry.timer);
    let browse: OpenedBrowse;
    try {
      browse = await entry.opening;
    } catch (err) {
      entry.inFlight--;
      throw err;
    }
    if (this.entries.get(key) !== entry) {
      entry.inFlight--;
      throw new LifeboatError('LFB_ERR_SESSION_NOT_FOUND', `the file session of point ${pointId} was closed while the request waited; ask again`);
    }
    let released = false;
    return {
      browse,
      release: () => {
        if (released) return;
        released = true;
        entry.inFlight--;
        entry.lastUsed = this.o.clock.now();
        if (entry.inFlight === 0 && this.entries.get(key) === entry) entry.timer = setTimeout(() => void this.closeEntry(entry, 'idle'), this.idleMs).unref();
      },
    };
  }

  /** A remembered failure of the point's open, still within its time, thrown again (saying when it was found). */
  private throwIfRemembered(key: string, pointId: string): void {
    const failed = this.failedOpens.get(key);
    if (failed === undefined) return;
    const until = new Date(failed.at.getTime() + this.idleMs);
    if (this.o.clock.now() >= until) {
      this.failedOpens.delete(key);
      return;
    }
    throw new LifeboatError(
      failed.error.code,
      `${failed.error.message} (found when point ${pointId} was opened at ${failed.at.toISOString()}; the same answer until ${until.toISOString()}, or until its files session is closed)`,
      { details: { ...failed.error.details, foundAt: failed.at.toISOString() } },
    );
  }

  private rememberFailure(key: string, job: string, pointId: string, error: LifeboatError): void {
    this.failedOpens.delete(key);
    this.failedOpens.set(key, { error, at: this.o.clock.now() });
    if (this.failedOpens.size > MAX_REMEMBERED_FAILURES) this.failedOpens.delete(this.failedOpens.keys().next().value!);
    this.o.logger.info('files: the point cannot be opened for what it holds; requests within the idle time get this answer without an appliance', {
      job,
      point: pointId,
      code: error.code,
    });
  }

  /** At the cap, the least recently used session no request uses is closed; with none, the request is refused. */
  private makeRoom(): void {
    const max = this.max;
    if (this.entries.size < max) return;
    const idle = [...this.entries.values()].filter((x) => x.inFlight === 0 && x.ready).sort((a, b) => a.lastUsed.getTime() - b.lastUsed.getTime());
    if (idle.length === 0)
      throw new LifeboatError('LFB_ERR_RATE_LIMITED', `${this.entries.size} file sessions are open and in use (at most ${max}); try again shortly`, {
        details: { retryAfterSeconds: 30 },
      });
    void this.closeEntry(idle[0]!, 'making room');
  }

  private closeEntry(e: Entry, why: string): Promise<void> {
    if (this.entries.get(e.key) === e) this.entries.delete(e.key);
    clearTimeout(e.timer);
    const done = e.opening
      .then(
        (b) => b.close(),
        () => undefined,
      )
      .then(
        () => this.o.logger.info('files: session closed', { repo: e.repo, job: e.job, point: e.pointId, why }),
        (err: unknown) => this.o.logger.warn('files: closing a session failed', { point: e.pointId, problem: String(err) }),
      );
    this.closing.add(done);
    void done.finally(() => this.closing.delete(done));
    return done;
  }

  /** Closes the point's session (waiting for it to end) and forgets a failure of its open; false when there was neither. */
  async close(root: string, job: string, pointRef: string): Promise<boolean> {
    const pointId = await this.pointIdOf(root, job, pointRef);
    const key = `${root}\0${job}\0${pointId}`;
    const forgot = this.failedOpens.delete(key);
    const e = this.entries.get(key);
    if (e === undefined) return forgot;
    await this.closeEntry(e, 'asked');
    return true;
  }

  list(): FileSessionInfo[] {
    return [...this.entries.values()].map((e) => ({
      repo: e.repo,
      job: e.job,
      pointId: e.pointId,
      state: e.ready ? 'open' : 'opening',
      openedAt: e.openedAt.toISOString(),
      lastUsedAt: e.lastUsed.toISOString(),
      ...(e.inFlight === 0 && e.ready ? { idleDeadline: new Date(e.lastUsed.getTime() + this.idleMs).toISOString() } : {}),
      requests: e.inFlight,
    }));
  }

  /** The server stops: every session ends (those still opening once their open ends). */
  async closeAll(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.entries.values()].map((e) => this.closeEntry(e, 'server stopping')));
    await Promise.all([...this.closing]);
  }
}
