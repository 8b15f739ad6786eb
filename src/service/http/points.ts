/**
 * A job's restore points, its retention plan, verify and restore. Points are
 * read from the repository (the backup files are the truth) and the
 * catalog's copy of them is replaced with what was read.
 */
import { LifeboatError } from '../../core/errors.js';
import type { ChangeMethod, PointRecord } from '../../catalog/catalog.js';
import { planChains } from '../../methods/retention-run.js';
import { describeDamage, type ChainFile, type JobState } from '../../repository/index.js';
import { gfsFlagsByPoint, type GfsKind } from '../../retention/index.js';
import type { Static } from 'typebox';
import type { ApiServer } from './api.js';
import { API_PREFIX, type ApiContext } from './context.js';
import { fileBytes } from './repositories.js';
import { checkWriteTarget } from './targets.js';
import type { Point } from './schemas.js';
import { ERROR_RESPONSES, JobParams, PointList, RestoreBody, RestoreReply, RetentionPlan, VerifyBody, VerifyReply } from './schemas.js';

type PointView = Static<typeof Point>;

/** One method for the point: the one that read the most (full over hash over cbt), as the catalog records it. */
function overallMethod(changes: readonly { method: ChangeMethod }[]): ChangeMethod | null {
  for (const m of ['full', 'hash', 'cbt'] as const) if (changes.some((c) => c.method === m)) return m;
  return null;
}

/** Every point of a job as the API shows it, oldest first: restorable, damaged and unavailable ones. */
export async function pointViews(ctx: ApiContext, root: string, job: string): Promise<PointView[]> {
  const { job: def, state } = await ctx.deps.service.jobState(root, job);
  const byPoint = new Map<string, ChainFile>();
  for (const c of state.chains) for (const f of [...c.rollbacks, c.full, ...c.increments]) byPoint.set(f.root.pointId, f);
  const flags: Map<string, GfsKind[]> = def.gfs ? gfsFlagsByPoint(planChains(state), def.gfs, ctx.deps.clock.now().toISOString()) : new Map();
  const sizes = new Map<string, number | null>();
  const sizeOf = async (file: string): Promise<number | null> => {
    if (!sizes.has(file)) sizes.set(file, await fileBytes(state, file));
    return sizes.get(file)!;
  };
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

/** An unavailable point has no scanned file to give its sequence number: -1. */
function seqOf(state: JobState, id: string): number {
  return state.points.find((p) => p.id === id)?.seq ?? -1;
}

async function cachePoints(ctx: ApiContext, root: string, job: string, points: readonly PointView[]): Promise<void> {
  const records: PointRecord[] = points.map((p) => ({
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
  }));
  try {
    await ctx.deps.catalog.replacePoints(root, job, records);
  } catch (err) {
    ctx.deps.logger.warn('http: the catalog did not take the points read', { repo: root, job, error: err instanceof Error ? err.message : String(err) });
  }
}

export function pointRoutes(app: ApiServer, ctx: ApiContext): void {
  const { service } = ctx.deps;

  app.get(
    `${API_PREFIX}/repositories/:repo/jobs/:job/points`,
    {
      schema: {
        summary: "The job's restore points: kind, sizes, chain, GFS flags, health and how each disk's changes were found",
        tags: ['points'],
        params: JobParams,
        response: { 200: PointList, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const root = ctx.repoRoot(request.params.repo);
      const points = await pointViews(ctx, root, request.params.job);
      await cachePoints(ctx, root, request.params.job, points);
      return { repo: request.params.repo, job: request.params.job, points };
    },
  );

  app.get(
    `${API_PREFIX}/repositories/:repo/jobs/:job/retention-plan`,
    {
      schema: {
        summary: 'What retention would do now, and why each point stays (changes nothing)',
        tags: ['points'],
        params: JobParams,
        response: { 200: RetentionPlan, ...ERROR_RESPONSES },
      },
    },
    async (request) => service.retentionPlan(ctx.repoRoot(request.params.repo), request.params.job),
  );

  app.post(
    `${API_PREFIX}/repositories/:repo/jobs/:job/verify`,
    {
      schema: {
        summary: "Health check of a point (or every file): answers when it is done; damaged points are marked in the job's health record",
        tags: ['points'],
        params: JobParams,
        body: VerifyBody,
        response: { 200: VerifyReply, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const b = request.body;
      if (b.all === true && b.point !== undefined) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'point and all exclude each other');
      const r = await service.verify(ctx.repoRoot(request.params.repo), request.params.job, {
        point: b.point,
        all: b.all === true,
        repair: b.repair === true,
      });
      const repaired = r.repair !== undefined && 'whole' in r.repair && r.repair.whole;
      return {
        ok: r.problems.length === 0 || repaired,
        files: r.files,
        blocks: r.blocks,
        storedBytes: r.storedBytes,
        points: [...r.points],
        problems: r.problems.map((p) => ({ ...p })),
        damagedPoints: r.damagedPoints.map((d) => d.id),
        ...(r.repair === undefined
          ? {}
          : { repair: 'skipped' in r.repair ? { skipped: r.repair.skipped } : { pointId: r.repair.backup.pointId, whole: r.repair.whole } }),
      };
    },
  );

  app.post(
    `${API_PREFIX}/repositories/:repo/jobs/:job/restore`,
    {
      schema: {
        summary: 'Restore a point to a path on the server (raw or qcow2); answers when the disks are written',
        description: "Operators may restore only into the server's target folders (403 elsewhere); admins anywhere.",
        tags: ['points'],
        params: JobParams,
        body: RestoreBody,
        response: { 200: RestoreReply, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const b = request.body;
      await checkWriteTarget(ctx, request.principal!, b.to, 'restore');
      const r = await service.restore(ctx.repoRoot(request.params.repo), request.params.job, {
        point: b.point ?? 'latest',
        to: b.to,
        disk: b.disk,
        format: b.format,
        force: b.force === true,
      });
      return { pointId: r.point.id, targets: r.targets };
    },
  );
}
