/**
 * A catalog as a busy server's looks after a long time: many ended runs of a
 * few dozen jobs in two repositories (most succeeded, some warned, failed,
 * were interrupted or stopped), and each job's restore points. Shared by
 * bench:catalog (the catalog alone) and bench:service (the server's API over it).
 */
import type { Catalog, PointRecord, RunState } from '../src/catalog/catalog.js';

export interface CatalogShape {
  readonly runs: number;
  readonly points: number;
  readonly jobs: number;
  /** Repository roots the runs and points are spread over (run i in repos[i % repos.length]). */
  readonly repos: readonly string[];
}

const T0 = Date.parse('2026-01-01T00:00:00Z');
/** The time `m` minutes after the first run was queued: run i is queued at minutes(i). */
export const minutes = (m: number): string => new Date(T0 + m * 60_000).toISOString();

export const fillJobName = (i: number, shape: CatalogShape): string => `vm-${String(i % shape.jobs).padStart(2, '0')}`;
export const fillRepoOf = (i: number, shape: CatalogShape): string => shape.repos[i % shape.repos.length]!;

/** Most runs succeed; a few warn, fail, are interrupted or stopped. */
function endState(i: number): RunState {
  const r = (i * 2654435761) % 1000;
  if (r < 30) return 'failed';
  if (r < 80) return 'warning';
  if (r < 83) return 'interrupted';
  if (r < 85) return 'stopped';
  return 'succeeded';
}

async function inParallel(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

/** Records `shape.runs` ended runs and `shape.points` points, `width` calls at a time. */
export async function fillCatalog(catalog: Catalog, shape: CatalogShape, width: number): Promise<void> {
  const t0 = performance.now();
  const jobName = (i: number) => fillJobName(i, shape);
  const repoOf = (i: number) => fillRepoOf(i, shape);
  await inParallel(shape.runs, width, async (i) => {
    const run = await catalog.createRun({
      repo: repoOf(i),
      job: jobName(i),
      trigger: i % 7 === 0 ? 'manual' : 'schedule',
      attempt: 1,
      retryOf: null,
      queuedAt: minutes(i),
    });
    await catalog.updateRun(run.id, {
      state: endState(i),
      startedAt: minutes(i),
      endedAt: minutes(i + 5),
      bytesRead: 2 ** 30,
      bytesStored: 2 ** 26,
      steps: { scan: 200, data: 4000, commit: 50 },
      changeMethod: 'cbt',
      pointId: `p-${i}`,
    });
  });
  const perJob = Math.ceil(shape.points / shape.jobs);
  for (let j = 0; j < shape.jobs; j++) {
    const points: PointRecord[] = Array.from({ length: perJob }, (_, s) => ({
      repo: repoOf(j),
      job: jobName(j),
      pointId: `p-${j}-${s}`,
      seq: s + 1,
      createdAt: minutes(s * 60),
      kind: s % 30 === 0 ? 'full' : 'increment',
      file: `${jobName(j)}-${s + 1}.lbk`,
      chainId: `c-${Math.floor(s / 30)}`,
      diskBytes: 2 ** 34,
      storedBytes: 2 ** 28,
      gfs: s % 7 === 0 ? ['weekly'] : [],
      health: 'ok',
      changeMethod: s % 30 === 0 ? 'full' : 'cbt',
    }));
    await catalog.replacePoints(repoOf(j), jobName(j), points);
  }
  console.log(`  filled ${shape.runs} runs and ${perJob * shape.jobs} points in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
