import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import { readCapacityRecord, readCapacityTier, type CapacityTierConfig } from '../repository/capacity-tier.js';
import { scanJob, type Repository } from '../repository/index.js';
import type { TierPlace } from '../repository/tiered-storage.js';
import { recordedAsIs, tieredStorageOf } from './tier-run.js';

export interface TierFileState {
  readonly file: string;
  readonly bytes: number;
  readonly place: TierPlace;
  /** The capacity copy was made of an older state of the local file (a merge or compact since): the next run copies it again. */
  readonly stale: boolean;
  readonly points: readonly string[];
}

export interface TierJobState {
  readonly job: string;
  readonly files: readonly TierFileState[];
}

/** Where each backup file of each job is (the local folder and the jobs' capacity records say), with the points each holds (read from the files, wherever they are). */
export async function tierStatus(repo: Repository): Promise<{ tier: CapacityTierConfig; jobs: TierJobState[] }> {
  const storage = tieredStorageOf(repo);
  // The setting and the local records say it all: the object store is not asked (it may be down).
  const tier = await readCapacityTier(repo.root);
  if (tier === undefined) throw new LifeboatError('LFB_ERR_NO_CAPACITY_TIER', `${repo.root} has no capacity tier`, { details: { repo: repo.root } });
  const jobs: TierJobState[] = [];
  for (const name of await repo.listJobs()) {
    const dir = repo.jobDir(name);
    const record = (await readCapacityRecord(dir, storage.local)).files;
    const here = new Set(await storage.local.list(dir));
    const names = (await storage.list(dir)).filter((n) => /^[^.].*\.(vbk|vib|vrb)$/.test(n));
    const points = new Map<string, string[]>();
    for (const p of (await scanJob(dir, storage)).points) points.set(p.file, [...(points.get(p.file) ?? []), p.id]);
    const files: TierFileState[] = [];
    for (const file of names) {
      const st = here.has(file) ? await stat(join(dir, file)).catch(() => undefined) : undefined;
      const copy = record[file];
      const place: TierPlace = st === undefined ? 'capacity' : copy === undefined ? 'local' : 'both';
      files.push({
        file,
        bytes: st?.size ?? copy?.size ?? 0,
        place,
        stale: st !== undefined && copy !== undefined && !recordedAsIs(copy, st),
        points: points.get(file) ?? [],
      });
    }
    jobs.push({ job: name, files });
  }
  return { tier, jobs };
}
