/**
 * Repository usage over time, for capacity charts: the bytes a repository's
 * backup files take and its file system's free and total bytes, sampled into
 * the catalog within a check interval of any change of the backup files (a
 * run's end, a CLI backup, retention) and at least hourly. Sizes come from
 * the job folders' signatures (job-signature.ts): a sample opens no file.
 */
import { statfs } from 'node:fs/promises';
import type { Catalog } from '../catalog/catalog.js';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import { fromFsError } from '../core/errors.js';
import { isObjectLocation } from '../repository/index.js';
import { jobFolderNames, jobFolderSignature } from './job-signature.js';

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

export interface UsageSamplerOptions {
  readonly catalog: Catalog;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Repository roots. */
  readonly repos: readonly string[];
  /** How often the job folders are looked at for a change (default a minute). */
  readonly checkMs?: number;
  /** The longest between two samples of a repository (default an hour). */
  readonly everyMs?: number;
  /** Samples older than this are deleted (default 400 days: a year of charts). */
  readonly keepMs?: number;
}

/** What a repository's backup files take now, with a fingerprint of them all (names, sizes, times). */
async function repositoryFiles(root: string, now: Date): Promise<{ bytes: number; fingerprint: string }> {
  let bytes = 0;
  const parts: string[] = [];
  for (const job of await jobFolderNames(root)) {
    const sig = await jobFolderSignature(root, job, now);
    if (sig === undefined) continue;
    bytes += sig.backupBytes;
    parts.push(`${job}:${sig.signature}`);
  }
  return { bytes, fingerprint: parts.join(',') };
}

/**
 * The free and total bytes of the file system a repository is on (LFB_ERR_IO when it cannot be read). Object storage
 * has no free space to tell: 0 of 0, as `repo info` shows none.
 */
export async function repositorySpace(root: string): Promise<{ freeBytes: number; totalBytes: number }> {
  if (isObjectLocation(root)) return { freeBytes: 0, totalBytes: 0 };
  const fs = await statfs(root).catch((err: unknown) => {
    throw fromFsError(err, 'reading the free space of', root);
  });
  return { freeBytes: fs.bavail * fs.bsize, totalBytes: fs.blocks * fs.bsize };
}

export class UsageSampler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly last = new Map<string, { at: number; fingerprint: string }>();
  private lastPrune = 0;

  constructor(private readonly opts: UsageSamplerOptions) {}

  /** Samples now, then looks every checkMs. */
  start(): void {
    if (this.timer !== undefined) return;
    void this.check();
    this.timer = setInterval(() => void this.check(), this.opts.checkMs ?? MINUTE_MS).unref();
  }

  /** Stops looking; a check under way ends first. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** Samples each repository whose backup files changed since its last sample, or whose last sample is an hour old. One check at a time. */
  check(): Promise<void> {
    this.running ??= this.checkAll().finally(() => (this.running = undefined));
    return this.running;
  }

  private async checkAll(): Promise<void> {
    const now = this.opts.clock.now();
    for (const root of this.opts.repos) {
      try {
        const files = await repositoryFiles(root, now);
        const last = this.last.get(root);
        if (last !== undefined && last.fingerprint === files.fingerprint && now.getTime() - last.at < (this.opts.everyMs ?? HOUR_MS)) continue;
        await this.opts.catalog.addUsageSample({ repo: root, at: now.toISOString(), bytes: files.bytes, ...(await repositorySpace(root)) });
        this.last.set(root, { at: now.getTime(), fingerprint: files.fingerprint });
      } catch (err) {
        // A sample is a chart's dot: a failure is logged and the next check tries again.
        this.opts.logger.warn('service: sampling the usage of a repository failed', { repo: root, problem: err instanceof Error ? err.message : String(err) });
      }
    }
    if (now.getTime() - this.lastPrune >= HOUR_MS) {
      this.lastPrune = now.getTime();
      const before = new Date(now.getTime() - (this.opts.keepMs ?? 400 * DAY_MS)).toISOString();
      await this.opts.catalog.deleteUsageSamplesBefore(before).catch((err: unknown) => {
        this.opts.logger.warn('service: deleting old usage samples failed', { problem: err instanceof Error ? err.message : String(err) });
      });
    }
  }
}

/** One sampler per set of API dependencies (the repository routes start and stop it with the server). */
const byOwner = new WeakMap<object, UsageSampler>();

export function usageSamplerOf(owner: object, make: () => UsageSampler): UsageSampler {
  let s = byOwner.get(owner);
  if (s === undefined) {
    s = make();
    byOwner.set(owner, s);
  }
  return s;
}
