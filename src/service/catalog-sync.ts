/**
 * The catalog's copy of a repository's jobs and points, made from the
 * repository itself: the backup files are the truth, the catalog a cache of
 * what they hold. Shared by the HTTP API (catalog-freshness.ts: a job is read
 * again when its folder's signature changed) and `lifeboat catalog rebuild`
 * (which remakes a repository's whole copy).
 */
import { join } from 'node:path';
import type { LifeboatService } from '../app/service.js';
import type { Catalog, ChangeMethod, JobReadRecord, JobRecord, PointRecord } from '../catalog/catalog.js';
import { planChains } from '../methods/retention-run.js';
import { describeDamage, repositoryRoot, type ChainFile, type JobDefinition, type JobState } from '../repository/index.js';
import { filePlaces, type TierPlace } from '../repository/tiered-storage.js';
import { gfsFlagsByPoint, type GfsKind } from '../retention/index.js';
import { jobFolderSignature, recordedSignature } from './job-signature.js';

/** How one disk's changes were found for a point (and why, when CBT was not used although asked for). */
export interface DiskChangeView {
  method: ChangeMethod;
  note?: string;
}

/** A restore point as the API shows it (the `Point` schema of src/service/http/schemas.ts). */
export interface PointView {
  id: string;
  seq: number;
  createdAt: string;
  kind: 'full' | 'increment' | 'rollback';
  file: string;
  chainId: string | null;
  parentId: string | null;
  diskSizes: number[];
  /** The disks together. */
  diskBytes: number;
  /** What the point's backup file takes; null when it cannot be read. */
  storedBytes: number | null;
  gfs: GfsKind[];
  health: 'ok' | 'damaged' | 'unavailable';
  problem?: string;
  problemCode?: string;
  changes: DiskChangeView[];
  changeMethod: ChangeMethod | null;
  /** A repository with a capacity tier: where the point's backup file is (the folder, the capacity extent, or both). */
  place?: TierPlace;
}

/** Bytes a backup file takes (its length), through the repository's storage; null when it cannot be read. */
export async function fileBytes(state: JobState, file: string): Promise<number | null> {
  try {
    const f = await state.storage.open(join(state.dir, file), 'read');
    try {
      return await f.size();
    } finally {
      await f.close();
    }
  } catch {
    return null;
  }
}

/** One method for the point: the one that read the most (full over hash over cbt), as the catalog records it. */
function overallMethod(changes: readonly { method: ChangeMethod }[]): ChangeMethod | null {
  for (const m of ['full', 'hash', 'cbt'] as const) if (changes.some((c) => c.method === m)) return m;
  return null;
}

/** An unavailable point has no scanned file to give its sequence number: -1. */
function seqOf(state: JobState, id: string): number {
  return state.points.find((p) => p.id === id)?.seq ?? -1;
}

/**
 * Every point of a scanned job, oldest first: restorable, damaged and
 * unavailable ones. GFS flags are those of `now`. `knownBytes`: backup files'
 * sizes already known (from the folder's signature), so those files are not
 * opened for their size.
 */
export async function pointViewsOf(def: JobDefinition, state: JobState, now: Date, knownBytes?: ReadonlyMap<string, number>): Promise<PointView[]> {
  const byPoint = new Map<string, ChainFile>();
  for (const c of state.chains) for (const f of [...c.rollbacks, c.full, ...c.increments]) byPoint.set(f.root.pointId, f);
  const flags: Map<string, GfsKind[]> = def.gfs ? gfsFlagsByPoint(planChains(state), def.gfs, now.toISOString()) : new Map();
  const sizes = new Map<string, number | null>();
  const sizeOf = async (file: string): Promise<number | null> => {
    if (!sizes.has(file)) sizes.set(file, knownBytes?.get(file) ?? (await fileBytes(state, file)));
    return sizes.get(file)!;
  };
  // A repository with a capacity tier: where each file is (unavailable points' files are nowhere to be said).
  const places = await filePlaces(state.storage, state.dir, [...new Set(state.points.map((p) => p.file))]);
  const out: PointView[] = [];
  for (const p of state.points) {
    const changes = (byPoint.get(p.id)?.root.meta.changes ?? []).map((c) => ({ method: c.method, ...(c.note === undefined ? {} : { note: c.note }) }));
    const damage = state.damagedPoints.get(p.id);
    out.push({
      id: p.id,
      seq: p.seq,
      createdAt: p.createdAt,
      kind: p.kind,
      file: p.file,
      chainId: p.chainId,
      parentId: p.parentId,
      diskSizes: [...p.diskSizes],
      diskBytes: p.diskSizes.reduce((a, b) => a + b, 0),
      storedBytes: await sizeOf(p.file),
      gfs: flags.get(p.id) ?? [],
      health: damage ? 'damaged' : 'ok',
      ...(damage ? { problem: describeDamage(damage), problemCode: damage.files.length > 0 ? 'LFB_ERR_FILE_CORRUPT' : 'LFB_ERR_BLOCK_CORRUPT' } : {}),
      changes,
      changeMethod: overallMethod(changes),
      ...(places?.has(p.file) === true ? { place: places.get(p.file)! } : {}),
    });
  }
  for (const u of state.unavailable)
    out.push({
      id: u.id,
      seq: seqOf(state, u.id),
      createdAt: u.createdAt,
      kind: u.kind,
      file: u.file,
      chainId: null,
      parentId: null,
      diskSizes: [],
      diskBytes: 0,
      storedBytes: await sizeOf(u.file),
      gfs: [],
      health: 'unavailable',
      problem: u.problem,
      problemCode: u.code,
      changes: [],
      changeMethod: null,
    });
  return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

/** What a PointView has beyond a PointRecord's fields: the record's `detail`. */
interface PointDetail {
  parentId: string | null;
  diskSizes: number[];
  storedBytes: number | null;
  problem?: string;
  problemCode?: string;
  changes: DiskChangeView[];
  place?: TierPlace;
}

/** The catalog's rows for a job's points (each with its detail: the view comes back whole from the catalog). */
export function pointRecords(root: string, job: string, points: readonly PointView[]): PointRecord[] {
  return points.map((p) => {
    const detail: PointDetail = {
      parentId: p.parentId,
      diskSizes: p.diskSizes,
      storedBytes: p.storedBytes,
      ...(p.problem === undefined ? {} : { problem: p.problem }),
      ...(p.problemCode === undefined ? {} : { problemCode: p.problemCode }),
      changes: p.changes,
      ...(p.place === undefined ? {} : { place: p.place }),
    };
    return {
      repo: root,
      job,
      pointId: p.id,
      seq: p.seq,
      createdAt: p.createdAt,
      kind: p.kind,
      file: p.file,
      chainId: p.chainId ?? '',
      diskBytes: p.diskBytes,
      storedBytes: p.storedBytes ?? 0,
      gfs: p.gfs,
      health: p.health,
      changeMethod: p.changeMethod,
      detail: detail as unknown as Record<string, unknown>,
    };
  });
}

/** The API's view of a point the catalog recorded (with its detail, as pointRecords writes it), oldest first by pointsInOrder. */
export function pointViewOf(r: PointRecord): PointView {
  const d = (r.detail ?? {}) as Partial<PointDetail>;
  return {
    id: r.pointId,
    seq: r.seq,
    createdAt: r.createdAt,
    kind: r.kind,
    file: r.file,
    chainId: r.chainId === '' ? null : r.chainId,
    parentId: d.parentId ?? null,
    diskSizes: d.diskSizes ?? [],
    diskBytes: r.diskBytes,
    storedBytes: d.storedBytes === undefined ? r.storedBytes : d.storedBytes,
    gfs: [...r.gfs],
    health: r.health,
    ...(d.problem === undefined ? {} : { problem: d.problem }),
    ...(d.problemCode === undefined ? {} : { problemCode: d.problemCode }),
    changes: d.changes ?? [],
    changeMethod: r.changeMethod,
    ...(d.place === undefined ? {} : { place: d.place }),
  };
}

/** Points as the API lists them: oldest first (unavailable points have no sequence number to order by). */
export function pointsInOrder(points: readonly PointView[]): PointView[] {
  return [...points].sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.seq - b.seq);
}

/** The summary a job's read records: counts, bytes and the newest restorable point. */
export function jobReadSummary(
  views: readonly PointView[],
  damagedFiles: number,
  backupBytes: number,
): Omit<JobReadRecord, 'repo' | 'job' | 'signature' | 'readAt'> {
  const restorable = views.filter((v) => v.health !== 'unavailable');
  const last = pointsInOrder(restorable).at(-1);
  return {
    points: restorable.length,
    damagedPoints: views.filter((v) => v.health === 'damaged').length,
    unavailablePoints: views.length - restorable.length,
    damagedFiles,
    storedBytes: backupBytes,
    lastPointId: last?.id ?? null,
    lastPointAt: last?.createdAt ?? null,
  };
}

/** The catalog's row for a job (its definition as job.json holds it). */
export function jobRecord(root: string, def: JobDefinition, now: Date): JobRecord {
  return { repo: root, name: def.name, jobId: def.jobId, definition: def as unknown as Record<string, unknown>, updatedAt: now.toISOString() };
}

export interface CatalogRebuild {
  /** The repository's root folder (the catalog's key for it). */
  readonly repo: string;
  /** Jobs the repository has, each recorded anew. */
  readonly jobs: number;
  /** Their points, recorded anew. */
  readonly points: number;
  /** Jobs the catalog had for the repository that it no longer has: forgotten with their points. */
  readonly removed: readonly string[];
}

/**
 * Remakes the catalog's jobs and points of the repository at `repoDir` from
 * its files. Every job is read before anything is written, so a job that
 * cannot be read fails the rebuild with the catalog unchanged. Runs stay:
 * they are history, not a copy of the repository.
 */
export async function rebuildCatalog(catalog: Catalog, service: LifeboatService, repoDir: string): Promise<CatalogRebuild> {
  const root = repositoryRoot(repoDir);
  const now = service.clock.now();
  const read: { job: JobRecord; points: PointRecord[]; read: JobReadRecord }[] = [];
  for (const name of await service.listJobs(root)) {
    // Taken before the read: a change during it leaves the recorded signature behind the folder, and the API reads the job again.
    const sig = await jobFolderSignature(root, name, now);
    const { job: def, state } = await service.jobState(root, name);
    const views = await pointViewsOf(def, state, now, sig?.fileBytes);
    read.push({
      job: jobRecord(root, def, now),
      points: pointRecords(root, def.name, views),
      read: {
        repo: root,
        job: def.name,
        // A folder that lost its job.json during the read: no signature matches it, so the API reads the job again.
        signature: sig === undefined ? '' : recordedSignature(sig),
        readAt: now.toISOString(),
        ...jobReadSummary(views, state.damaged.length, sig?.backupBytes ?? 0),
      },
    });
  }
  const names = new Set(read.map((r) => r.job.name));
  const removed = (await catalog.listJobs(root)).map((j) => j.name).filter((name) => !names.has(name));
  for (const name of removed) await catalog.deleteJob(root, name);
  for (const r of read) await catalog.recordJobRead(r.job, r.points, r.read);
  return { repo: root, jobs: read.length, points: read.reduce((a, r) => a + r.points.length, 0), removed };
}
