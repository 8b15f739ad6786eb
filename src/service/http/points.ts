/**
 * A job's restore points, its retention plan, verify and restore. The point
 * listing answers from the catalog's copy, read again first when the job's
 * folder changed (src/service/catalog-freshness.ts): the backup files stay
 * the truth, and an unchanged job's listing opens none of them.
 */
import { LifeboatError } from '../../core/errors.js';
import { pointViewOf, pointsInOrder } from '../catalog-sync.js';
import type { ApiServer } from './api.js';
import { API_PREFIX, type ApiContext } from './context.js';
import { freshness } from './jobs.js';
import { checkWriteTarget } from './targets.js';
import { ERROR_RESPONSES, JobParams, PointList, RestoreBody, RestoreReply, RetentionPlan, VerifyBody, VerifyReply } from './schemas.js';

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
      const { points } = await freshness(ctx.deps).points(root, request.params.job);
      return { repo: request.params.repo, job: request.params.job, points: pointsInOrder(points.map(pointViewOf)) };
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
