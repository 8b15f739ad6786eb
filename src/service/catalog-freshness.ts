/**
 * The API's jobs and points come from the catalog, kept true to the backup
 * files cheaply. Each job's catalog copy records the signature of the job
 * folder it was read from (job-signature.ts: one listing and a stat of each
 * file, none opened). A request compares it with the folder's signature now
 * and reads again only the jobs that changed (a backup by the CLI alone, a
 * `job set`, retention, a merge, a file deleted by hand). Jobs that appeared
 * in the repository are read; jobs that vanished are forgotten. Requests for
 * one changed job share one read.
 */
import type { Catalog, JobReadRecord, JobRecord, PointRecord } from '../catalog/catalog.js';
import type { Clock } from '../core/clock.js';
import { LifeboatError } from '../core/errors.js';
import { Repository, isObjectLocation, loadJob, scanJob, validateJobName } from '../repository/index.js';
import type { Storage } from '../storage/index.js';
import { jobRecord, jobReadSummary, pointRecords, pointViewsOf } from './catalog-sync.js';
import { jobFolderSignature, jobFolderNames, recordedSignature, tierSetting, type JobFolderSignature } from './job-signature.js';

/** A job as the catalog has it, checked against its folder. */
export interface FreshJob {
  readonly job: JobRecord;
  readonly read: JobReadRecord;
  /** The folder as the request found it (its backup files' sizes among it). */
  readonly folder: JobFolderSignature;
}

export interface CatalogFreshnessOptions {
  readonly catalog: Catalog;
  readonly clock: Clock;
  /** What backup files are read through when a job is read again (a counting or failing one in tests); default: the repository's own (a folder's file system, or its object store). */
  readonly storage?: Storage | undefined;
  /**
   * Whether one of this server's runs is writing the job now. Its catalog
   * copy then stands as it is until the run ends and the server refreshes
   * it: mid-run the folder changes with every commit step, merge and
   * retention pass, and reading it again at each request would cost every
   * listing a scan of files being written (in the service benchmark, GET
   * jobs went from 1.7 ms at p50 idle to 43 ms at p99 while 4 backups ran).
   */
  readonly writing?: ((root: string, job: string) => boolean) | undefined;
}

/** How long a job refreshed with a racy signature waits before its next read (longer than the fine racy window of job-signature.ts). */
const SETTLE_MS = 100;

function jobNotFound(root: string, name: string): LifeboatError {
  return new LifeboatError('LFB_ERR_JOB_NOT_FOUND', `no job "${name}" in ${root}; create it with \`lifeboat job create\``, { details: { job: name } });
}

export class CatalogFreshness {
  /** How many times a job's files were read (scanned): what a request of an unchanged job must not add to. */
  jobReads = 0;
  private readonly reading = new Map<string, { readonly signature: string; readonly done: Promise<void> }>();
  /** Each job folder's signature as last taken, by root and name: what stands for a job being written. */
  private readonly lastSignatures = new Map<string, JobFolderSignature>();
  /** Jobs refreshed at the end of a run while their times were too recent to trust, each with its read to come. */
  private readonly settling = new Map<string, NodeJS.Timeout>();
  /** Those reads under way. */
  private readonly settleReads = new Set<Promise<unknown>>();
  private closed = false;
  private readonly storage: Storage | undefined;

  constructor(private readonly opts: CatalogFreshnessOptions) {
    this.storage = opts.storage;
  }

  /** Whether the job's catalog copy stands whatever its folder says: one of this server's runs writes it, or it settles after one. */
  private isWriting(root: string, name: string): boolean {
    return this.opts.writing?.(root, name) === true || this.settling.has(`${root}\0${name}`);
  }

  private get catalog(): Catalog {
    return this.opts.catalog;
  }

  /** The repository's jobs, by name, each read again first if its folder changed; vanished jobs are forgotten. */
  async jobs(root: string): Promise<FreshJob[]> {
    const now = this.opts.clock.now();
    const names = await jobFolderNames(root);
    const reads = await this.catalog.listJobReads(root);
    const known = new Map(reads.map((r) => [r.job, r.signature]));
    // One stat of the repository's tier setting for all its jobs (a local one; object storage has none to stat).
    const tier = isObjectLocation(root) ? undefined : tierSetting(root);
    const signatures = await Promise.all(names.map((n) => this.signature(root, n, now, known.has(n), tier)));
    const present = new Map<string, JobFolderSignature>();
    names.forEach((n, i) => {
      // A folder without job.json is no job (yet: `job create` writes it last).
      if (signatures[i] !== undefined) present.set(n, signatures[i]);
    });
    const stale = [...present].filter(([n, sig]) => known.get(n) !== sig.signature && !(known.has(n) && this.isWriting(root, n)));
    await Promise.all(stale.map(([n, sig]) => this.readAgain(root, n, sig)));
    const jobs = await this.catalog.listJobs(root);
    for (const j of jobs) if (!present.has(j.name)) await this.catalog.deleteJob(root, j.name);
    const fresh = stale.length === 0 ? reads : await this.catalog.listJobReads(root);
    const byName = new Map(fresh.map((r) => [r.job, r]));
    return jobs.filter((j) => present.has(j.name) && byName.has(j.name)).map((j) => ({ job: j, read: byName.get(j.name)!, folder: present.get(j.name)! }));
  }

  /** One job, read again first if its folder changed; LFB_ERR_JOB_NOT_FOUND (and forgotten) when it has no folder or job.json. */
  async job(root: string, name: string): Promise<FreshJob> {
    validateJobName(name);
    const reads = await this.catalog.listJobReads(root);
    let read = reads.find((r) => r.job === name);
    const sig = await this.signature(root, name, this.opts.clock.now(), read !== undefined);
    if (sig === undefined) {
      if (read !== undefined || (await this.catalog.listJobs(root)).some((j) => j.name === name)) await this.catalog.deleteJob(root, name);
      throw jobNotFound(root, name);
    }
    if (read?.signature !== sig.signature && !(read !== undefined && this.isWriting(root, name))) {
      await this.readAgain(root, name, sig);
      read = (await this.catalog.listJobReads(root)).find((r) => r.job === name);
    }
    const job = (await this.catalog.listJobs(root)).find((j) => j.name === name);
    // Deleted between the read and here (by another request that saw the folder gone).
    if (job === undefined || read === undefined) throw jobNotFound(root, name);
    return { job, read, folder: sig };
  }

  /**
   * The job folder's signature now; for a job one of this server's runs is
   * writing (and that has a catalog copy), the one taken last instead: that
   * copy stands until the run ends whatever the folder says, and the folder is
   * the one being renamed into and synced, where a listing and stats would
   * wait on the writes (the jobs listing's p99 while 4 backups run).
   */
  private async signature(root: string, name: string, now: Date, cataloged: boolean, tier?: string): Promise<JobFolderSignature | undefined> {
    const key = `${root}\0${name}`;
    if (cataloged && this.isWriting(root, name)) {
      const kept = this.lastSignatures.get(key);
      if (kept !== undefined) return kept;
    }
    const sig = await jobFolderSignature(root, name, now, tier);
    if (sig === undefined) this.lastSignatures.delete(key);
    else this.lastSignatures.set(key, sig);
    return sig;
  }

  /** A job's points as the catalog has them, read again first if the job's folder changed. */
  async points(root: string, name: string): Promise<{ fresh: FreshJob; points: readonly PointRecord[] }> {
    const fresh = await this.job(root, name);
    return { fresh, points: await this.catalog.listPoints(root, name) };
  }

  /**
   * Reads a job again now if its folder changed since its catalog copy. The
   * server calls it when one of its runs ends, so the next request finds the
   * job fresh instead of reading the new point's files itself (a request that
   * comes during this read shares it). A job gone from the repository is left
   * for the next request to forget.
   */
  async refresh(root: string, name: string): Promise<void> {
    if (await this.refreshOnce(root, name)) this.settle(root, name);
  }

  /**
   * Reads the job again if its folder changed; true when the signature it
   * went by was racy. `settling`: a folder still racy and unchanged since the
   * last read waits for the next round instead (a file system that keeps
   * whole seconds stays racy for two).
   */
  private async refreshOnce(root: string, name: string, settling = false): Promise<boolean> {
    const [sig, reads] = await Promise.all([this.signature(root, name, this.opts.clock.now(), false), this.catalog.listJobReads(root)]);
    if (sig === undefined) return false;
    const recorded = reads.find((r) => r.job === name)?.signature;
    const unchanged = recorded === sig.signature || (settling && sig.racy && recorded === recordedSignature(sig));
    if (!unchanged) await this.readAgain(root, name, sig);
    return sig.racy;
  }

  /**
   * A run's end comes right after its last writes, so its refresh is most
   * often taken while the folder's times are too recent to trust (racy), and
   * the next request would read the job again, inside the request (10–50 ms
   * while backups run). Instead the copy the refresh made stands, and the job
   * is read again here once its times have settled (again later while they
   * keep changing). A change by another writer within the same timestamp
   * step as the run's last write shows at that read, moments later.
   */
  private settle(root: string, name: string): void {
    const key = `${root}\0${name}`;
    if (this.closed || this.settling.has(key)) return;
    const timer = setTimeout(() => {
      // A run of the job started meanwhile: its refresh at its end takes over (no read of files being written).
      if (this.opts.writing?.(root, name) === true) {
        this.settling.delete(key);
        return;
      }
      const read = this.refreshOnce(root, name, true).then(
        (racy) => {
          this.settling.delete(key);
          // Still too recent: the folder kept changing, or its file system keeps whole seconds.
          if (racy) this.settle(root, name);
        },
        () => this.settling.delete(key), // the next request reads the job itself
      );
      this.settleReads.add(read);
      void read.finally(() => this.settleReads.delete(read));
    }, SETTLE_MS);
    timer.unref();
    this.settling.set(key, timer);
  }

  /** Cancels the background reads to come and waits for one under way: the server closes its catalog next. */
  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.settling.values()) clearTimeout(timer);
    this.settling.clear();
    await Promise.allSettled([...this.settleReads]);
  }

  /**
   * Reads the job's files and records them with `sig`, taken before the read:
   * a change during the read leaves the recorded signature older than the
   * folder, so the next request reads again. Requests that find the same
   * signature stale share one read.
   */
  private readAgain(root: string, name: string, sig: JobFolderSignature): Promise<void> {
    const key = `${root}\0${name}`;
    const under = this.reading.get(key);
    if (under !== undefined && under.signature === sig.signature) return under.done;
    const done = this.read(root, name, sig).finally(() => {
      if (this.reading.get(key)?.done === done) this.reading.delete(key);
    });
    this.reading.set(key, { signature: sig.signature, done });
    return done;
  }

  private async read(root: string, name: string, sig: JobFolderSignature): Promise<void> {
    this.jobReads++;
    const repo = await Repository.open(root, this.storage === undefined ? {} : { storage: this.storage });
    const def = await loadJob(repo, name);
    const state = await scanJob(repo.jobDir(def.name), repo.storage);
    const now = this.opts.clock.now();
    const views = await pointViewsOf(def, state, now, sig.fileBytes);
    await this.catalog.recordJobRead(jobRecord(root, def, now), pointRecords(root, def.name, views), {
      repo: root,
      job: def.name,
      signature: recordedSignature(sig),
      readAt: now.toISOString(),
      ...jobReadSummary(views, state.damaged.length, sig.backupBytes),
    });
  }
}

/** One freshness per set of API dependencies: the routes of one server share its reads in flight and its counter. */
const byOwner = new WeakMap<object, CatalogFreshness>();

/** The freshness of `owner` (the API's dependencies), made with `make` the first time. */
export function catalogFreshnessOf(owner: object, make: () => CatalogFreshness): CatalogFreshness {
  let f = byOwner.get(owner);
  if (f === undefined) {
    f = make();
    byOwner.set(owner, f);
  }
  return f;
}
