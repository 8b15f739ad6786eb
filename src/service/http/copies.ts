/**
 * Backup copy jobs in the API: the list and one copy job (settings, next
 * run, last run) read from the repository's copy files and the catalog, and
 * run-now. Copy jobs are made and removed with `lifeboat copy create|delete`.
 */
import { LifeboatError } from '../../core/errors.js';
import { nextFire } from '../../core/schedule-text.js';
import type { CopyJobDefinition } from '../../app/index.js';
import type { ApiServer } from './api.js';
import { API_PREFIX, type ApiContext } from './context.js';
import { runView } from './runs.js';
import { ERROR_RESPONSES, RepoParams } from './schemas.js';
import { CopyJobList, CopyJobParams, CopyJobView } from './copies-schemas.js';
import { Type } from 'typebox';

async function view(ctx: ApiContext, root: string, c: CopyJobDefinition) {
  const next = c.schedule === undefined ? null : nextFire(c.schedule, ctx.deps.clock.now().getTime());
  const last = (await ctx.deps.catalog.listRuns({ repo: root, job: c.name, kind: 'copy', limit: 1 })).runs[0];
  return {
    name: c.name,
    job: c.job,
    toRepo: c.toRepo,
    retainPoints: c.retainPoints,
    retainDays: c.retainDays ?? null,
    gfs: c.gfs ? { weekly: c.gfs.weekly, monthly: c.gfs.monthly, yearly: c.gfs.yearly } : null,
    schedule: c.schedule ?? null,
    window: c.window ?? null,
    after: c.after ?? null,
    createdAt: c.createdAt,
    nextRunAt: next === null ? null : new Date(next).toISOString(),
    lastRun:
      last === undefined
        ? null
        : {
            id: last.id,
            state: last.state,
            queuedAt: last.queuedAt,
            endedAt: last.endedAt,
            bytesStored: last.bytesStored,
            pointId: last.pointId,
            errorCode: last.errorCode,
          },
  };
}

export function copyRoutes(app: ApiServer, ctx: ApiContext): void {
  const base = `${API_PREFIX}/repositories/:repo/copies`;

  app.get(
    base,
    {
      schema: {
        summary: "The repository's backup copy jobs: source job, target repository, schedule, next run, last run",
        tags: ['copies'],
        params: RepoParams,
        response: { 200: CopyJobList, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const root = ctx.repoRoot(request.params.repo);
      const copies: Awaited<ReturnType<typeof view>>[] = [];
      for (const c of await ctx.deps.service.listCopyJobs(root)) copies.push(await view(ctx, root, c));
      return { copies };
    },
  );

  app.get(
    `${base}/:name`,
    {
      schema: {
        summary: 'One backup copy job: its settings, next run and last run',
        tags: ['copies'],
        params: CopyJobParams,
        response: { 200: CopyJobView, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const root = ctx.repoRoot(request.params.repo);
      return view(ctx, root, await ctx.deps.service.copyJob(root, request.params.name));
    },
  );

  app.post(
    `${base}/:name/run`,
    {
      schema: {
        summary: "Copy the job's new points now; the run goes on after the answer (follow GET /runs/{id})",
        tags: ['copies'],
        params: CopyJobParams,
        response: { 202: Type.Ref('Run'), ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const root = ctx.repoRoot(request.params.repo);
      await ctx.deps.service.copyJob(root, request.params.name);
      const runner = ctx.runner();
      if (runner.runCopyNow === undefined) throw new LifeboatError('LFB_ERR_SERVER_NOT_RUNNING', 'this server runs no copy jobs');
      const run = await runner.runCopyNow(root, request.params.name, 'api');
      return reply.code(202).send(runView(ctx, run));
    },
  );
}
