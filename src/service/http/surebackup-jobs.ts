/**
 * SureBackup jobs in the API: the list and one job (settings, next run, last
 * run) read from the repository's job files and the catalog, and run-now.
 * Jobs are made and changed with `lifeboat surebackup job create|set`.
 */
import {
  DEFAULT_BOOT_TIMEOUT_S,
  listSureBackupJobNames,
  loadSureBackupJob,
  SUREBACKUP_DEFAULT_RETRIES,
  type SureBackupJob,
} from '../../app/surebackup-jobs.js';
import { LifeboatError } from '../../core/errors.js';
import { DEFAULT_RETRY_DELAY, nextFire } from '../../core/schedule-text.js';
import type { ApiServer } from './api.js';
import { API_PREFIX, type ApiContext } from './context.js';
import { runView } from './runs.js';
import { ERROR_RESPONSES, RepoParams } from './schemas.js';
import { SureBackupJobList, SureBackupJobParams, SureBackupJobView } from './surebackup-schemas.js';
import { Type } from 'typebox';

async function view(ctx: ApiContext, root: string, j: SureBackupJob) {
  const now = ctx.deps.clock.now().getTime();
  const next = j.schedule === undefined || j.disabled === true ? null : nextFire(j.schedule, now);
  const last = (await ctx.deps.catalog.listRuns({ repo: root, job: j.name, kind: 'surebackup', limit: 1 })).runs[0];
  return {
    name: j.name,
    vms: [...j.vms],
    waitFor: [...(j.waitFor ?? [])],
    ports: [...(j.ports ?? [])],
    http: [...(j.http ?? [])],
    scripts: [...(j.scripts ?? [])],
    serialPattern: j.serialPattern ?? null,
    timeoutS: j.timeoutS ?? DEFAULT_BOOT_TIMEOUT_S,
    accel: j.accel ?? null,
    everyPoint: j.everyPoint === true,
    schedule: j.schedule ?? null,
    window: j.window ?? null,
    retries: j.retries ?? SUREBACKUP_DEFAULT_RETRIES,
    retryDelay: j.retryDelay ?? DEFAULT_RETRY_DELAY,
    after: j.after ?? null,
    disabled: j.disabled === true,
    nextRunAt: next === null ? null : new Date(next).toISOString(),
    lastRun:
      last === undefined
        ? null
        : { id: last.id, state: last.state, queuedAt: last.queuedAt, endedAt: last.endedAt, reportId: last.reportId, errorCode: last.errorCode },
  };
}

export function surebackupJobRoutes(app: ApiServer, ctx: ApiContext): void {
  const base = `${API_PREFIX}/repositories/:repo/surebackup/jobs`;

  app.get(
    base,
    {
      schema: {
        summary: "The repository's SureBackup jobs: group, schedule, next run, last run",
        tags: ['surebackup'],
        params: RepoParams,
        response: { 200: SureBackupJobList, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const root = ctx.repoRoot(request.params.repo);
      const jobs: Awaited<ReturnType<typeof view>>[] = [];
      for (const name of await listSureBackupJobNames(root)) {
        // A hand-edited job that cannot be read is left out here; `surebackup job show` names its problem.
        const j = await loadSureBackupJob(root, name).catch(() => undefined);
        if (j) jobs.push(await view(ctx, root, j));
      }
      return { jobs };
    },
  );

  app.get(
    `${base}/:name`,
    {
      schema: {
        summary: 'One SureBackup job: its settings, next run and last run',
        tags: ['surebackup'],
        params: SureBackupJobParams,
        response: { 200: SureBackupJobView, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const root = ctx.repoRoot(request.params.repo);
      return view(ctx, root, await loadSureBackupJob(root, request.params.name));
    },
  );

  app.post(
    `${base}/:name/run`,
    {
      schema: {
        summary: 'Run the SureBackup job now; the run goes on after the answer (follow GET /runs/{id})',
        tags: ['surebackup'],
        params: SureBackupJobParams,
        response: { 202: Type.Ref('Run'), ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const root = ctx.repoRoot(request.params.repo);
      await loadSureBackupJob(root, request.params.name);
      const runner = ctx.runner();
      if (runner.runSureBackupNow === undefined) throw new LifeboatError('LFB_ERR_SERVER_NOT_RUNNING', 'this server runs no SureBackup jobs');
      const run = await runner.runSureBackupNow(root, request.params.name, 'api');
      return reply.code(202).send(runView(ctx, run));
    },
  );
}
