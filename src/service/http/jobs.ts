/**
 * Jobs of a repository: list, one, create, change, delete, run now, stop.
 * job.json in the repository is the truth. The listings answer from the
 * catalog's copy, read again first for each job whose folder changed
 * (src/service/catalog-freshness.ts); a change through the API also updates
 * the copy at once (a failed update is logged, never fails the change).
 */
import { Type, type Static } from 'typebox';
import { LifeboatError, isLifeboatError } from '../../core/errors.js';
import type { Weekday } from '../../core/clock.js';
import { RUN_STATES, type RunRecord } from '../../catalog/catalog.js';
import { nextFire } from '../../core/schedule-text.js';
import { defaultMethod, retentionWarnings } from '../../repository/job-defaults.js';
import type { JobDefinition } from '../../repository/index.js';
import { jobRecord } from '../catalog-sync.js';
import { CatalogFreshness, catalogFreshnessOf, type FreshJob } from '../catalog-freshness.js';
import type { ApiServer } from './api.js';
import { API_PREFIX, type ApiContext } from './context.js';
import type { HttpApiDeps } from './deps.js';
import { runView } from './runs.js';
import { ERROR_RESPONSES, JobChangeBody, JobCreateBody, JobCreated, JobDeleteQuery, JobDeleted, JobParams, JobSummary, RepoParams } from './schemas.js';

const ACTIVE = RUN_STATES.filter((s) => s === 'queued' || s === 'running');

/** The catalog's copy of a job (a cache: a failure is logged, the repository already changed); the scheduler is told. */
async function cacheJob(ctx: ApiContext, root: string, job: JobDefinition | undefined, name: string): Promise<void> {
  ctx.deps.runner?.jobChanged?.(root, name);
  try {
    if (job === undefined) await ctx.deps.catalog.deleteJob(root, name);
    else await ctx.deps.catalog.putJob(jobRecord(root, job, ctx.deps.clock.now()));
  } catch (err) {
    ctx.deps.logger.warn('http: the catalog did not take a job change', { repo: root, job: name, error: err instanceof Error ? err.message : String(err) });
  }
}

/** The catalog reader the job and point listings of one server share (its reads in flight, its counter). */
export function freshness(deps: HttpApiDeps): CatalogFreshness {
  return deps.freshness ?? catalogFreshnessOf(deps, () => new CatalogFreshness({ catalog: deps.catalog, clock: deps.clock }));
}

/** The listings of a repository's jobs: each job's newest run comes from one catalog statement for them all. */
async function jobSummaries(ctx: ApiContext, repo: string, root: string, fresh: readonly FreshJob[]): Promise<Static<typeof JobSummary>[]> {
  const latest = await ctx.deps.catalog.latestRuns(
    root,
    fresh.map((f) => f.job.name),
  );
  return fresh.map((f) => jobSummary(ctx, repo, f, latest.get(f.job.name)));
}

/** A job as the listings show it: the catalog's copy and read, its newest run, and when its schedule next starts it. */
function jobSummary(ctx: ApiContext, repo: string, fresh: FreshJob, last: RunRecord | undefined): Static<typeof JobSummary> {
  const job = fresh.job.definition as unknown as JobDefinition;
  const { read } = fresh;
  const now = ctx.deps.clock.now();
  // When a server would start it by its schedule (in the server's time zone), if it has one and is enabled.
  const next = job.schedule === undefined || job.disabled === true ? null : nextFire(job.schedule, now.getTime());
  return {
    repo,
    job: job as unknown as Static<typeof JobSummary>['job'],
    points: read.points,
    damagedFiles: read.damagedFiles,
    nextRunAt: next === null ? null : new Date(next).toISOString(),
    damagedPoints: read.damagedPoints,
    unavailablePoints: read.unavailablePoints,
    storedBytes: read.storedBytes,
    lastRun: last === undefined ? null : { id: last.id, state: last.state, endedAt: last.endedAt, errorCode: last.errorCode },
    lastPoint:
      read.lastPointId === null || read.lastPointAt === null
        ? null
        : { id: read.lastPointId, createdAt: read.lastPointAt, ageSeconds: Math.max(0, Math.floor((now.getTime() - Date.parse(read.lastPointAt)) / 1000)) },
  };
}

/** The rules `job create` checks before the service does (the service checks the rest). */
function checkCreate(b: JobCreateBody): void {
  if (b.retainPoints !== undefined && b.retainDays !== undefined)
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'retainPoints and retainDays exclude each other');
  if ((b.qmp === undefined) !== (b.drives === undefined || b.drives.length === 0))
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'qmp (a monitor socket) and drives (node names) go together');
  if ((b.disks?.length ?? 0) === 0 && (b.drives?.length ?? 0) === 0)
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'a job needs disks, or qmp with drives');
}

export function jobRoutes(app: ApiServer, ctx: ApiContext): void {
  const { service } = ctx.deps;

  app.get(
    `${API_PREFIX}/jobs`,
    {
      schema: {
        summary: 'The jobs of every repository this server serves (what GET /repositories/{repo}/jobs gives, for all of them in one answer)',
        tags: ['jobs'],
        response: { 200: Type.Object({ jobs: Type.Array(JobSummary) }, { additionalProperties: false }), ...ERROR_RESPONSES },
      },
    },
    async () => {
      const perRepo = await Promise.all([...ctx.repos].map(async ([name, root]) => jobSummaries(ctx, name, root, await freshness(ctx.deps).jobs(root))));
      return { jobs: perRepo.flat() };
    },
  );

  app.get(
    `${API_PREFIX}/repositories/:repo/jobs`,
    {
      schema: {
        summary: 'The jobs of a repository',
        tags: ['jobs'],
        params: RepoParams,
        response: { 200: Type.Object({ jobs: Type.Array(JobSummary) }, { additionalProperties: false }), ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const root = ctx.repoRoot(request.params.repo);
      const fresh = await freshness(ctx.deps).jobs(root);
      return { jobs: await jobSummaries(ctx, request.params.repo, root, fresh) };
    },
  );

  app.get(
    `${API_PREFIX}/repositories/:repo/jobs/:job`,
    { schema: { summary: 'One job', tags: ['jobs'], params: JobParams, response: { 200: JobSummary, ...ERROR_RESPONSES } } },
    async (request) => {
      const root = ctx.repoRoot(request.params.repo);
      const fresh = await freshness(ctx.deps).job(root, request.params.job);
      const [only] = await jobSummaries(ctx, request.params.repo, root, [fresh]);
      return only!;
    },
  );

  app.post(
    `${API_PREFIX}/repositories/:repo/jobs`,
    {
      config: { role: 'admin' },
      schema: {
        summary: 'Create a job (as `lifeboat job create`)',
        tags: ['jobs'],
        params: RepoParams,
        body: JobCreateBody,
        response: { 201: JobCreated, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const b = request.body;
      checkCreate(b);
      const root = ctx.repoRoot(request.params.repo);
      const activeFullDays = (b.activeFullDays ?? []) as Weekday[];
      const syntheticFullDays = (b.syntheticFullDays ?? []) as Weekday[];
      const job = await service.createJob(root, {
        name: b.name,
        disks: b.disks ?? [],
        ...(b.qmp !== undefined ? { qmp: b.qmp, drives: b.drives } : {}),
        method: b.method ?? defaultMethod(activeFullDays, syntheticFullDays),
        retainPoints: b.retainPoints ?? 7,
        retainDays: b.retainDays,
        activeFullDays,
        syntheticFullDays,
        transformToRollbacks: b.transformToRollbacks,
        cbt: b.cbt,
        diskFormat: b.diskFormat,
        gfs: b.gfs,
        vmConfigFile: b.vmConfigFile,
        schedule: b.schedule,
        window: b.window,
        retries: b.retries,
        retryDelay: b.retryDelay,
        after: b.after,
        disabled: b.disabled,
        mover: b.mover,
      });
      await cacheJob(ctx, root, job, job.name);
      return reply.code(201).send({ repo: request.params.repo, job, warnings: retentionWarnings(job) });
    },
  );

  app.patch(
    `${API_PREFIX}/repositories/:repo/jobs/:job`,
    {
      config: { role: 'admin' },
      schema: {
        summary: 'Change a job (as `lifeboat job set`): only what is given; null clears a setting',
        description: 'Refused with 409 LFB_ERR_JOB_LOCKED while a backup of the job runs.',
        tags: ['jobs'],
        params: JobParams,
        body: JobChangeBody,
        response: {
          200: Type.Object({ repo: Type.String(), before: Type.Ref('Job'), after: Type.Ref('Job') }, { additionalProperties: false }),
          ...ERROR_RESPONSES,
        },
      },
    },
    async (request) => {
      const b = request.body;
      if (b.retainPoints !== undefined && b.retainDays !== undefined)
        throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'retainPoints and retainDays exclude each other');
      const root = ctx.repoRoot(request.params.repo);
      const r = await service.setJob(root, request.params.job, {
        ...b,
        activeFullDays: b.activeFullDays as Weekday[] | undefined,
        syntheticFullDays: b.syntheticFullDays as Weekday[] | undefined,
      });
      await cacheJob(ctx, root, r.after, r.after.name);
      return { repo: request.params.repo, before: r.before, after: r.after };
    },
  );

  app.delete(
    `${API_PREFIX}/repositories/:repo/jobs/:job`,
    {
      config: { role: 'admin' },
      schema: {
        summary: 'Delete a job; its backup files only with withPoints=true',
        tags: ['jobs'],
        params: JobParams,
        querystring: JobDeleteQuery,
        response: { 200: JobDeleted, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const root = ctx.repoRoot(request.params.repo);
      const r = await service.deleteJob(root, request.params.job, { withPoints: request.query.withPoints === true });
      await cacheJob(ctx, root, undefined, request.params.job);
      return r;
    },
  );

  app.post(
    `${API_PREFIX}/repositories/:repo/jobs/:job/run`,
    {
      schema: {
        summary: 'Run the job now; the run goes on after the answer (follow GET /runs/{id}/events)',
        tags: ['jobs'],
        params: JobParams,
        response: { 202: Type.Ref('Run'), ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const root = ctx.repoRoot(request.params.repo);
      // A job that does not exist is 404 before anything is queued (job.json alone: the backup files are not read for this).
      await service.jobDefinition(root, request.params.job);
      const run = await ctx.runner().runNow(root, request.params.job, 'api');
      return reply.code(202).send(runView(ctx, run));
    },
  );

  app.post(
    `${API_PREFIX}/repositories/:repo/jobs/:job/stop`,
    {
      schema: {
        summary: "Stop the job's queued and running backup runs (they end as stopped; a SureBackup job's runs are not touched)",
        tags: ['jobs'],
        params: JobParams,
        response: { 200: Type.Object({ stopped: Type.Array(Type.Integer()) }, { additionalProperties: false }), ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const root = ctx.repoRoot(request.params.repo);
      await service.jobDefinition(root, request.params.job);
      const r = ctx.runner();
      const active: RunRecord[] = [];
      for (let before: number | undefined; ;) {
        // Backup runs only: a SureBackup job of the same name is not this job.
        const page = await ctx.deps.catalog.listRuns({
          repo: root,
          job: request.params.job,
          kind: 'backup',
          states: ACTIVE,
          limit: 1000,
          ...(before ? { before } : {}),
        });
        active.push(...page.runs);
        if (page.next === null) break;
        before = page.next;
      }
      // All at once: each queued run is marked stopped before any stop waits for a running one to end (whose end
      // could otherwise start it), and a run that ended by itself meanwhile keeps none of the others going.
      const outcomes = await Promise.allSettled(active.map((run) => r.stop(run.id)));
      const stopped: number[] = [];
      for (const [i, o] of outcomes.entries()) {
        if (o.status === 'fulfilled') stopped.push(active[i]!.id);
        else if (!isLifeboatError(o.reason, 'LFB_ERR_INVALID_ARGUMENT')) throw o.reason;
      }
      return { stopped };
    },
  );
}
