/**
 * Runs from the catalog: the list with filters and paging, one run with its
 * tasks and log, stop, and its live progress as Server-Sent Events.
 */
import { Type } from 'typebox';
import type { RunJsonPage, RunRecord, RunState } from '../../catalog/catalog.js';
import { LifeboatError } from '../../core/errors.js';
import type { ApiServer } from './api.js';
import { API_PREFIX, type ApiContext } from './context.js';
import { ERROR_RESPONSES, EVENT_STREAM, RunDetail, RunDetailQuery, RunListQuery, RunPage, RunParams } from './schemas.js';
import { pollInto, type EventStreams } from './sse.js';

const FINISHED: readonly RunState[] = ['succeeded', 'warning', 'failed', 'interrupted', 'stopped'];
/** Log lines one poll sends at most: a run that logs fast is caught up over a few polls. */
const LOG_BATCH = 500;

/** A run as the API shows it: the catalog's record with the repository's URL name. */
export function runView(ctx: ApiContext, r: RunRecord): RunRecord & { repoName: string } {
  return { ...r, repoName: ctx.repoName(r.repo) };
}

/**
 * The body of GET /runs: each run's JSON text as the catalog made it (listRunsAsJson), its repository's URL name put
 * in front as its first field. No records are built and no serializer runs (design.md, the catalog); the text holds
 * the schema's fields (the API tests check every answer against the OpenAPI document). Fastify (5.x, reply.js) sends
 * a Buffer a handler returns as it is, with its length.
 */
export function runPageBody(ctx: ApiContext, page: RunJsonPage): Buffer {
  const prefixByRepo = new Map<string, string>();
  const parts: string[] = [];
  for (const r of page.runs) {
    let prefix = prefixByRepo.get(r.repo);
    if (prefix === undefined) prefixByRepo.set(r.repo, (prefix = `{"repoName":${JSON.stringify(ctx.repoName(r.repo))},`));
    parts.push(prefix + r.json.slice(1));
  }
  return Buffer.from(`{"runs":[${parts.join(',')}],"next":${page.next === null ? 'null' : page.next}}`);
}

export function runRoutes(app: ApiServer, ctx: ApiContext, streams: EventStreams): void {
  const { catalog } = ctx.deps;
  const pollMs = ctx.deps.events?.pollMs ?? 500;
  const keepaliveMs = ctx.deps.events?.keepaliveMs ?? 15_000;
  const view = (r: RunRecord) => runView(ctx, r);

  app.get(
    `${API_PREFIX}/runs`,
    {
      schema: {
        summary: 'Runs, newest first; page with before=<next of the previous page>',
        tags: ['runs'],
        querystring: RunListQuery,
        response: { 200: RunPage, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const q = request.query;
      const page = await catalog.listRunsAsJson({
        ...(q.repo !== undefined ? { repo: ctx.repoRoot(q.repo) } : {}),
        ...(q.job !== undefined ? { job: q.job } : {}),
        ...(q.kind !== undefined ? { kind: q.kind } : {}),
        ...(q.state !== undefined ? { states: q.state } : {}),
        ...(q.since !== undefined ? { since: new Date(q.since).toISOString() } : {}),
        limit: q.limit ?? 50,
        ...(q.before !== undefined ? { before: q.before } : {}),
      });
      // A Buffer would go out as application/octet-stream otherwise.
      void reply.type('application/json; charset=utf-8');
      return runPageBody(ctx, page);
    },
  );

  app.get(
    `${API_PREFIX}/runs/:id`,
    {
      schema: {
        summary: 'One run with its tasks (one per disk) and its log',
        tags: ['runs'],
        params: RunParams,
        querystring: RunDetailQuery,
        response: { 200: RunDetail, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const id = request.params.id;
      const run = await catalog.getRun(id);
      const [tasks, log] = await Promise.all([catalog.listTasks(id), catalog.readLog(id, request.query.logAfter ?? 0, request.query.logLimit ?? 1000)]);
      return { run: view(run), tasks: [...tasks], log: [...log] };
    },
  );

  app.post(
    `${API_PREFIX}/runs/:id/stop`,
    {
      schema: {
        summary: 'Stop a queued or running run (it ends as stopped)',
        tags: ['runs'],
        params: RunParams,
        response: { 200: Type.Ref('Run'), ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const id = request.params.id;
      const run = await catalog.getRun(id);
      if (FINISHED.includes(run.state)) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `run ${id} has already ended (${run.state})`);
      await ctx.runner().stop(id);
      return view(await catalog.getRun(id));
    },
  );

  app.get(
    `${API_PREFIX}/runs/:id/events`,
    {
      schema: {
        summary:
          'Live progress of a run as Server-Sent Events: `run` (the record, when it changes), `log` (each new line), `progress` (bytes of the current disk), `end` (the run finished; the stream closes)',
        tags: ['runs'],
        params: RunParams,
        querystring: Type.Object(
          { logAfter: Type.Optional(Type.Integer({ minimum: 0, description: 'log lines already seen' })) },
          { additionalProperties: false },
        ),
        response: { ...EVENT_STREAM, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const id = request.params.id;
      // A run that does not exist is an ordinary 404, before the stream opens.
      await catalog.getRun(id);
      const stream = streams.start(request, reply, keepaliveMs);
      let lastRun = '';
      let seq = request.query.logAfter ?? 0;
      const readNow = pollInto(stream, pollMs, async () => {
        const run = await catalog.getRun(id);
        for (;;) {
          const lines = await catalog.readLog(id, seq, LOG_BATCH);
          for (const l of lines) stream.send('log', l);
          seq = lines.at(-1)?.seq ?? seq;
          // A finished run's log is sent whole before `end`.
          if (lines.length < LOG_BATCH || !FINISHED.includes(run.state)) break;
        }
        const text = JSON.stringify(run);
        if (text !== lastRun) stream.send('run', view(run));
        lastRun = text;
        if (!FINISHED.includes(run.state)) return false;
        stream.send('end', { id, state: run.state });
        return true;
      });
      // The run's end is read as soon as it is recorded, not up to pollMs later.
      const unwatch = ctx.deps.runner?.watch?.(
        id,
        (p) => stream.send('progress', p),
        () => readNow(),
      );
      if (unwatch) stream.onClose(unwatch);
    },
  );
}
