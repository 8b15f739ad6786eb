/** The repositories this server serves, with what each job's backup files take and the space left (as `lifeboat repo info`). */
import { statfs } from 'node:fs/promises';
import { Type, type Static } from 'typebox';
import { fromFsError } from '../../core/errors.js';
import { fileBytes } from '../catalog-sync.js';
import type { ApiServer } from './api.js';
import { API_PREFIX, type ApiContext } from './context.js';
import { ERROR_RESPONSES, RepoParams, RepositoryUsage } from './schemas.js';

async function usage(ctx: ApiContext, name: string, root: string): Promise<Static<typeof RepositoryUsage>> {
  const jobs = [];
  for (const job of await ctx.deps.service.listJobs(root)) {
    const { points, state } = await ctx.deps.service.points(root, job);
    // Every backup file of the job, damaged ones too: they take space until repaired or deleted.
    const files = new Set<string>([
      ...state.chains.flatMap((c) => [...c.rollbacks, c.full, ...c.increments].map((f) => f.name)),
      ...state.damaged.map((d) => d.file),
    ]);
    let bytes = 0;
    for (const f of files) bytes += (await fileBytes(state, f)) ?? 0;
    jobs.push({ name: job, points: points.length, unavailablePoints: state.unavailable.length, files: files.size, bytes });
  }
  const fs = await statfs(root).catch((err: unknown) => {
    throw fromFsError(err, 'reading the free space of', root);
  });
  return {
    name,
    root,
    jobs,
    bytes: jobs.reduce((a, j) => a + j.bytes, 0),
    freeBytes: fs.bavail * fs.bsize,
    totalBytes: fs.blocks * fs.bsize,
  };
}

export function repositoryRoutes(app: ApiServer, ctx: ApiContext): void {
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
}
