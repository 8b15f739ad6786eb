/**
 * Data movers (src/service/movers): their poll, progress and result (the
 * calls `lifeboat mover` makes, with a token of a user of role mover, whose
 * name is the mover's, or an operator's), and the list of the movers the
 * server knows. A server that runs no jobs (an API alone,
 * as in tests) has no hub: LFB_ERR_SERVER_NOT_RUNNING.
 */
import { Type } from 'typebox';
import { LifeboatError } from '../../core/errors.js';
import type { MoverHub } from '../movers/mover-hub.js';
import { MoverParams, MoverTaskParams, MoverView, PollBody, PollReply, ProgressBody, ProgressReply, ResultBody } from '../movers/protocol.js';
import type { ApiServer } from './api.js';
import { API_PREFIX, type ApiContext } from './context.js';
import { ERROR_RESPONSES } from './schemas.js';
import type { Principal } from '../../auth/index.js';

/**
 * A user of role mover acts only as the mover of its own name, and joins no
 * group: its token cannot take or end another mover's tasks, nor a group's
 * (a group is the mover's word; movers of a group run on an operator's token).
 */
function actsAs(who: Principal | undefined, name: string, body?: unknown): void {
  if (who?.role !== 'mover') return;
  if (who.user !== name)
    throw new LifeboatError('LFB_ERR_FORBIDDEN', `user ${who.user} (mover) may act only as the data mover "${who.user}", not "${name}"`, {
      details: { user: who.user, mover: name },
    });
  const group = (body as { group?: unknown } | undefined)?.group;
  if (group !== undefined && group !== null)
    throw new LifeboatError(
      'LFB_ERR_FORBIDDEN',
      `user ${who.user} (mover) may not join a group: a job names this mover as "${who.user}"; movers of a group run on an operator's token`,
      { details: { user: who.user, mover: name, group } },
    );
}

export function moverRoutes(app: ApiServer, ctx: ApiContext): void {
  const hub = (): MoverHub => {
    const h = ctx.deps.movers;
    if (!h) throw new LifeboatError('LFB_ERR_SERVER_NOT_RUNNING', 'this server runs no jobs: it has no data movers');
    return h;
  };

  app.get(
    `${API_PREFIX}/movers`,
    {
      schema: {
        summary: 'The data movers the server has heard from since it started, with the runs they are doing',
        tags: ['movers'],
        response: { 200: Type.Object({ movers: Type.Array(MoverView) }, { additionalProperties: false }), ...ERROR_RESPONSES },
      },
    },
    async () => ({ movers: hub().list() }),
  );

  app.post(
    `${API_PREFIX}/movers/:name/poll`,
    {
      config: { role: 'mover' },
      // Before the body is validated: a token of another mover learns nothing from its answers.
      preValidation: async (request) => actsAs(request.principal, (request.params as { name: string }).name, request.body),
      schema: {
        summary: "A data mover's poll: it is alive; the answer has its new tasks and the ones to stop (waits up to 10 s for a task)",
        tags: ['movers'],
        params: MoverParams,
        body: PollBody,
        response: { 200: PollReply, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      // A mover that hung up while its poll waited (killed) must not count as seen when the wait ends.
      const gone = new AbortController();
      reply.raw.once('close', () => {
        if (!reply.raw.writableFinished) gone.abort();
      });
      return hub().poll(request.params.name, request.body, gone.signal);
    },
  );

  app.post(
    `${API_PREFIX}/movers/:name/tasks/:id/progress`,
    {
      config: { role: 'mover' },
      // Before the body is validated: a token of another mover learns nothing from its answers.
      preValidation: async (request) => actsAs(request.principal, (request.params as { name: string }).name, request.body),
      schema: {
        summary: "A data mover's task's progress; the answer says whether to stop it",
        tags: ['movers'],
        params: MoverTaskParams,
        body: ProgressBody,
        response: { 200: ProgressReply, ...ERROR_RESPONSES },
      },
    },
    async (request) => hub().progress(request.params.name, request.params.id, request.body),
  );

  app.post(
    `${API_PREFIX}/movers/:name/tasks/:id/result`,
    {
      config: { role: 'mover' },
      // Before the body is validated: a token of another mover learns nothing from its answers.
      preValidation: async (request) => actsAs(request.principal, (request.params as { name: string }).name, request.body),
      schema: {
        summary: "A data mover's task's end: the backup's outcome, or its error",
        tags: ['movers'],
        params: MoverTaskParams,
        body: ResultBody,
        response: { 200: Type.Object({}, { additionalProperties: false }), ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      hub().result(request.params.name, request.params.id, request.body);
      return {};
    },
  );
}
