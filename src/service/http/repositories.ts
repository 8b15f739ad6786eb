/**
 * The repositories this server serves, with what each job's backup files take
 * and the space left (as `lifeboat repo info`), and their usage over time.
 */
import { Type, type Static } from 'typebox';
import { isObjectLocation, locationText } from '../../repository/index.js';
import { capacityUsage } from '../../repository/capacity-tier.js';
import type { ApiServer } from './api.js';
import { API_PREFIX, type ApiContext } from './context.js';
import { ERROR_RESPONSES, RepoParams, RepositoryUsage, UsageSampleQuery, UsageSamples } from './schemas.js';
import { UsageSampler, repositorySpace, usageSamplerOf } from '../usage-sampler.js';
import type { HttpApiDeps } from './deps.js';
import { freshness } from './jobs.js';

/** How far back a usage listing goes when not told. */
const DEFAULT_USAGE_PERIOD_MS = 30 * 24 * 3600_000;

/** The usage sampler of one server (made the first time it is asked for). */
export function usageSampler(deps: HttpApiDeps): UsageSampler {
  return usageSamplerOf(deps, () => new UsageSampler({ catalog: deps.catalog, clock: deps.clock, logger: deps.logger, repos: deps.repos }));
}

/** A job's usage with its bytes on the capacity tier, when its record could be read. */
const withCapacity = <T extends object>(j: T, bytes: number | undefined): T & { capacityBytes?: number } =>
  bytes === undefined ? j : { ...j, capacityBytes: bytes };

async function usage(ctx: ApiContext, name: string, root: string): Promise<Static<typeof RepositoryUsage>> {
  // From the catalog, checked against the job folders (the files' sizes from their stats: no backup file is opened).
  const jobs = (await freshness(ctx.deps).jobs(root)).map((f) => ({
    name: f.job.name,
    points: f.read.points,
    unavailablePoints: f.read.unavailablePoints,
    files: f.folder.fileBytes.size,
    bytes: f.folder.backupBytes,
  }));
  const space = await repositorySpace(root);
  // A scale-out repository: what each job's recorded copies take on the capacity extent (its local bytes above count the folder only).
  const onCapacity = isObjectLocation(root)
    ? undefined
    : await capacityUsage(
        root,
        jobs.map((j) => j.name),
      );
  return {
    name,
    // As a user writes it: s3://bucket/prefix for a repository on S3.
    root: locationText(root),
    jobs: onCapacity ? jobs.map((j) => withCapacity(j, onCapacity.get(j.name))) : jobs,
    bytes: jobs.reduce((a, j) => a + j.bytes, 0),
    ...(onCapacity ? { capacityBytes: [...onCapacity.values()].reduce<number>((a, b) => a + (b ?? 0), 0) } : {}),
    ...space,
  };
}

export function repositoryRoutes(app: ApiServer, ctx: ApiContext): void {
  // The server samples its repositories' usage while it is up.
  const sampler = usageSampler(ctx.deps);
  app.addHook('onReady', async () => sampler.start());
  app.addHook('onClose', async () => sampler.stop());

  app.get(
    `${API_PREFIX}/repositories`,
    {
      schema: {
        summary: "The repositories, each job's bytes of backup files, and free space",
        tags: ['repositories'],
        response: { 200: Type.Object({ repositories: Type.Array(RepositoryUsage) }, { additionalProperties: false }), ...ERROR_RESPONSES },
      },
    },
    async () => {
      const repositories = [];
      for (const [name, root] of ctx.repos) repositories.push(await usage(ctx, name, root));
      return { repositories };
    },
  );

  app.get(
    `${API_PREFIX}/repositories/:repo`,
    { schema: { summary: 'One repository', tags: ['repositories'], params: RepoParams, response: { 200: RepositoryUsage, ...ERROR_RESPONSES } } },
    async (request) => usage(ctx, request.params.repo, ctx.repoRoot(request.params.repo)),
  );

  app.get(
    `${API_PREFIX}/repositories/:repo/usage`,
    {
      schema: {
        summary: "The repository's usage over a period, for capacity charts",
        description:
          'Samples of the bytes its backup files take and the free and total bytes of its file system: taken by the server within a minute of any change of the backup files and at least hourly, kept 400 days.',
        tags: ['repositories'],
        params: RepoParams,
        querystring: UsageSampleQuery,
        response: { 200: UsageSamples, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const root = ctx.repoRoot(request.params.repo);
      const until = request.query.until ?? ctx.deps.clock.now().toISOString();
      const since = request.query.since ?? new Date(Date.parse(until) - DEFAULT_USAGE_PERIOD_MS).toISOString();
      const samples = await ctx.deps.catalog.listUsageSamples(root, {
        since,
        until,
        ...(request.query.limit === undefined ? {} : { limit: request.query.limit }),
      });
      return { repo: request.params.repo, samples: samples.map((s) => ({ at: s.at, bytes: s.bytes, freeBytes: s.freeBytes, totalBytes: s.totalBytes })) };
    },
  );
}
