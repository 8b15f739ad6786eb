/**
 * A repository's capacity tier in the API: its setting, where each backup
 * file is (local, capacity or both), its next and last run, and run-now.
 * The setting is made and changed with `lifeboat tier set|clear`.
 */
import { Type, type TSchema } from 'typebox';
import { LifeboatError, isLifeboatError } from '../../core/errors.js';
import { nextFire } from '../../core/schedule-text.js';
import { DEFAULT_TIER_SCHEDULE, capacityTierState } from '../../app/capacity-tier.js';
import { locationText } from '../../repository/index.js';
import type { ApiServer } from './api.js';
import { API_PREFIX, type ApiContext } from './context.js';
import { runView } from './runs.js';
import { TIER_JOB } from '../runtime/tier-execution.js';
import { ERROR_RESPONSES, RepoParams, RunState } from './schemas.js';

const Time = Type.String({ format: 'date-time' });
const nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

const TierView = Type.Object(
  {
    capacity: Type.String({ description: 'the capacity extent: s3://bucket/prefix, or a folder' }),
    moveAfterDays: nullable(Type.Integer({ minimum: 0, description: 'chains whose newest point is this old move (null: none move)' })),
    copyNew: Type.Boolean({ description: 'every backup file is copied as it is written, the local one kept' }),
    schedule: Type.String({ description: 'cron: when the server runs the tier' }),
    nextRunAt: nullable(Time),
    lastRun: nullable(
      Type.Object(
        {
          id: Type.Integer(),
          state: RunState,
          queuedAt: Time,
          endedAt: nullable(Time),
          bytesStored: Type.Integer({ description: 'bytes copied' }),
          errorCode: nullable(Type.String()),
        },
        { additionalProperties: false },
      ),
    ),
    jobs: Type.Array(
      Type.Object(
        {
          job: Type.String(),
          files: Type.Array(
            Type.Object(
              {
                file: Type.String(),
                bytes: Type.Integer(),
                place: Type.Union([Type.Literal('local'), Type.Literal('capacity'), Type.Literal('both')]),
                stale: Type.Boolean({ description: 'the copy is of an older state of the local file: the next run copies it again' }),
                points: Type.Array(Type.String()),
              },
              { additionalProperties: false },
            ),
          ),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false, $id: 'CapacityTier' },
);

export function tierRoutes(app: ApiServer, ctx: ApiContext): void {
  const base = `${API_PREFIX}/repositories/:repo/tier`;

  app.get(
    base,
    {
      schema: {
        summary: "The repository's capacity tier: its setting, where each backup file is, next and last run ({tier: null} without one)",
        tags: ['tier'],
        params: RepoParams,
        response: { 200: Type.Object({ tier: nullable(TierView) }, { additionalProperties: false }), ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const root = ctx.repoRoot(request.params.repo);
      // A repository without a tier is a state, not an error: the console asks on every visit of its page.
      const state = await capacityTierState(root).catch((err: unknown) => {
        if (isLifeboatError(err, 'LFB_ERR_NO_CAPACITY_TIER')) return undefined;
        throw err;
      });
      if (state === undefined) return { tier: null };
      const { tier, jobs } = state;
      const schedule = tier.schedule ?? DEFAULT_TIER_SCHEDULE;
      const next = nextFire(schedule, ctx.deps.clock.now().getTime());
      const last = (await ctx.deps.catalog.listRuns({ repo: root, job: TIER_JOB, kind: 'tier', limit: 1 })).runs[0];
      return {
        tier: {
          capacity: locationText(tier.location),
          moveAfterDays: tier.moveAfterDays ?? null,
          copyNew: tier.copyNew,
          schedule,
          nextRunAt: next === null ? null : new Date(next).toISOString(),
          lastRun:
            last === undefined
              ? null
              : { id: last.id, state: last.state, queuedAt: last.queuedAt, endedAt: last.endedAt, bytesStored: last.bytesStored, errorCode: last.errorCode },
          jobs: jobs.map((j) => ({ job: j.job, files: j.files.map((f) => ({ ...f, points: [...f.points] })) })),
        },
      };
    },
  );

  app.post(
    `${base}/run`,
    {
      schema: {
        summary: 'Copy and move backup files to the capacity tier now; the run goes on after the answer (follow GET /runs/{id})',
        tags: ['tier'],
        params: RepoParams,
        response: { 202: Type.Ref('Run'), ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const root = ctx.repoRoot(request.params.repo);
      const runner = ctx.runner();
      if (runner.runTierNow === undefined) throw new LifeboatError('LFB_ERR_SERVER_NOT_RUNNING', 'this server runs no capacity tier');
      const run = await runner.runTierNow(root, 'api');
      return reply.code(202).send(runView(ctx, run));
    },
  );
}
